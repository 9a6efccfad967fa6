"""gRPC front end: tensorflow.serving.PredictionService and ModelService (and grpc.health.v1).

Messages and service definitions come from tensorflow-serving-api, so the stubs any TF
Serving client uses work unchanged. Failures abort with the ServingError's status code.
"""
from __future__ import annotations

import functools
import logging
import socket
import time
from concurrent import futures
from typing import Callable, List, Optional

import visionpipe  # noqa: F401
import grpc
import numpy as np
import tensorflow as tf
from google.protobuf import any_pb2
from tensorflow.core.framework import tensor_pb2, tensor_shape_pb2
from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2, get_model_status_pb2,
                                     inference_pb2, model_management_pb2, model_pb2,
                                     model_service_pb2_grpc, predict_pb2, prediction_service_pb2_grpc,
                                     regression_pb2)

from visionpipe.serving import errors
from visionpipe.serving.inference import InferenceService, ModelSpec
from visionpipe.serving.model_manager import ModelManager
from visionpipe.serving.servable import CLASSIFY_METHOD

log = logging.getLogger(__name__)

# tensorflow.error.Code values carry the same numbers as grpc.StatusCode.
_STATE_ENUM = get_model_status_pb2.ModelVersionStatus.State


def model_spec_from_proto(proto) -> ModelSpec:
    choice = proto.WhichOneof("version_choice")
    return ModelSpec(name=proto.name,
                     version=proto.version.value if choice == "version" else None,
                     label=proto.version_label if choice == "version_label" else None,
                     signature_name=proto.signature_name)


def _fill_spec(target, servable, signature_name: str) -> None:
    target.name = servable.model_name
    target.version.value = servable.version
    target.signature_name = signature_name


_MAX_RANK = 32  # numpy's limit; TF Serving's models take far fewer


def declared_bytes(name: str, proto) -> int:
    """Bytes the ndarray of a TensorProto will take, from its declared dtype and shape alone.

    A TensorProto may declare a huge shape and carry one value (TF fills the rest with it), so
    the size is checked before anything is allocated. Strings count one object pointer each
    (their bytes are already in the message)."""
    shape = proto.tensor_shape
    if shape.unknown_rank:
        raise errors.invalid_argument(f"input {name!r}: TensorProto has an unknown rank")
    if len(shape.dim) > _MAX_RANK:
        raise errors.invalid_argument(f"input {name!r}: rank {len(shape.dim)} exceeds {_MAX_RANK}")
    elements = 1
    for dim in shape.dim:
        if dim.size < 0:
            raise errors.invalid_argument(f"input {name!r}: negative dimension {dim.size} in shape")
        elements *= dim.size
    try:
        dtype = tf.as_dtype(proto.dtype)
        itemsize = 8 if dtype == tf.string else np.dtype(dtype.as_numpy_dtype).itemsize
    except Exception:  # DT_INVALID, resource, variant, out-of-range enum values
        raise errors.invalid_argument(
            f"input {name!r}: unsupported TensorProto dtype {proto.dtype}") from None
    return elements * itemsize


def tensor_to_ndarray(name: str, proto, max_bytes: Optional[int] = None) -> np.ndarray:
    """TensorProto -> ndarray; INVALID_ARGUMENT when malformed, RESOURCE_EXHAUSTED when its
    declared size exceeds ``max_bytes`` (checked before allocating)."""
    size = declared_bytes(name, proto)
    if max_bytes is not None and size > max_bytes:
        raise errors.resource_exhausted(
            f"input {name!r}: declared shape {[d.size for d in proto.tensor_shape.dim]} needs "
            f"{size} bytes, more than the {max_bytes}-byte request limit (--max_request_bytes)")
    try:
        return tf.make_ndarray(proto)
    except Exception as err:  # malformed TensorProto (bad dtype, content size mismatch)
        raise errors.invalid_argument(f"input {name!r}: not a valid TensorProto: {err}") from None


def request_inputs(request, max_bytes: Optional[int]) -> dict:
    """A PredictRequest's inputs as ndarrays; their declared sizes together stay within ``max_bytes``."""
    total = 0
    for name, proto in request.inputs.items():
        total += declared_bytes(name, proto)
        if max_bytes is not None and total > max_bytes:
            raise errors.resource_exhausted(
                f"inputs need more than the {max_bytes}-byte request limit (--max_request_bytes)")
    return {name: tensor_to_ndarray(name, proto, max_bytes) for name, proto in request.inputs.items()}


def ndarray_to_tensor(value: np.ndarray):
    """ndarray -> TensorProto; numeric arrays go straight to tensor_content (the hot path)."""
    if value.dtype.kind in "OSU" or value.dtype == np.float16:
        return tf.make_tensor_proto(value)
    proto = tensor_pb2.TensorProto(dtype=tf.as_dtype(value.dtype).as_datatype_enum,
                                   tensor_content=np.ascontiguousarray(value).tobytes())
    proto.tensor_shape.dim.extend(tensor_shape_pb2.TensorShapeProto.Dim(size=d) for d in value.shape)
    return proto


def _deadline(context) -> Optional[float]:
    remaining = context.time_remaining()
    return None if remaining is None else time.monotonic() + remaining


def serialized_examples(input_proto) -> List[bytes]:
    """tensorflow.serving.Input -> serialized Examples; context features merge as TF Serving does."""
    kind = input_proto.WhichOneof("kind")
    if kind == "example_list":
        return [e.SerializeToString() for e in input_proto.example_list.examples]
    if kind == "example_list_with_context":
        context = input_proto.example_list_with_context.context.SerializeToString()
        # Concatenated serialized messages parse as a merge; the example's own features win.
        return [context + e.SerializeToString()
                for e in input_proto.example_list_with_context.examples]
    raise errors.invalid_argument("Input is empty")


def _first_task_spec(request):
    """MultiInference: the first task's spec names the model (an empty one when there are none)."""
    return request.tasks[0].model_spec if request.tasks else model_pb2.ModelSpec()


def _rpc(api: str, spec_proto: Callable = lambda request: request.model_spec):
    """Map ServingError to the gRPC status; record the request in metrics."""
    def decorate(method: Callable):
        @functools.wraps(method)
        def wrapper(self, request, context):
            spec = model_spec_from_proto(spec_proto(request))
            try:
                with self.service.timed(api, spec):
                    return method(self, request, context, spec)
            except errors.ServingError as err:
                context.abort(err.code, err.message)
            except Exception as err:  # never leak a traceback to the client
                log.exception("%s failed", api)
                context.abort(grpc.StatusCode.INTERNAL, f"{api} failed: {err}")
        return wrapper
    return decorate


class PredictionServicer(prediction_service_pb2_grpc.PredictionServiceServicer):
    def __init__(self, service: InferenceService):
        self.service = service

    @_rpc("predict")
    def Predict(self, request, context, spec):
        inputs = request_inputs(request, self.service.limits.max_request_bytes)
        servable, signature, outputs = self.service.predict(
            spec, inputs, list(request.output_filter), _deadline(context))
        response = predict_pb2.PredictResponse()
        _fill_spec(response.model_spec, servable, signature.name)
        for name, value in outputs.items():
            response.outputs[name].CopyFrom(ndarray_to_tensor(value))
        return response

    @_rpc("classify")
    def Classify(self, request, context, spec):
        servable, signature, results = self.service.classify(
            spec, serialized_examples(request.input), _deadline(context))
        response = classification_pb2.ClassificationResponse()
        _fill_spec(response.model_spec, servable, signature.name)
        _fill_classifications(response.result, results)
        return response

    @_rpc("regress")
    def Regress(self, request, context, spec):
        servable, signature, values = self.service.regress(
            spec, serialized_examples(request.input), _deadline(context))
        response = regression_pb2.RegressionResponse()
        _fill_spec(response.model_spec, servable, signature.name)
        _fill_regressions(response.result, values)
        return response

    @_rpc("metadata")
    def GetModelMetadata(self, request, context, spec):
        return model_metadata(self.service, spec, list(request.metadata_field))

    @_rpc("multi_inference", _first_task_spec)
    def MultiInference(self, request, context, spec):
        tasks = [(model_spec_from_proto(task.model_spec), task.method_name) for task in request.tasks]
        servable, answers = self.service.multi_inference(
            tasks, serialized_examples(request.input), _deadline(context))
        response = inference_pb2.MultiInferenceResponse()
        for signature, method, results in answers:
            result = response.results.add()
            _fill_spec(result.model_spec, servable, signature.name)
            if method == CLASSIFY_METHOD:
                _fill_classifications(result.classification_result, results)
            else:
                _fill_regressions(result.regression_result, results)
        return response


def _fill_classifications(target, results) -> None:
    """[[(label, score), ...] per example] -> tensorflow.serving.ClassificationResult."""
    for row in results:
        classifications = target.classifications.add()
        for label, score in row:
            classifications.classes.add(label=label, score=score)


def _fill_regressions(target, values) -> None:
    for value in values:
        target.regressions.add(value=value)


def model_metadata(service: InferenceService, spec: ModelSpec, fields: List[str]):
    if fields != ["signature_def"]:
        raise errors.invalid_argument(
            f"Metadata field(s) {fields} not supported; only signature_def is")
    servable = service.resolve(spec)
    response = get_model_metadata_pb2.GetModelMetadataResponse()
    _fill_spec(response.model_spec, servable, "")
    packed = any_pb2.Any()
    packed.Pack(servable.signature_def_map())
    response.metadata["signature_def"].CopyFrom(packed)
    return response


def model_status(manager: ModelManager, spec: ModelSpec):
    response = get_model_status_pb2.GetModelStatusResponse()
    for version, status in manager.status(spec.name, spec.version, spec.label):
        entry = response.model_version_status.add(version=version, state=_STATE_ENUM.Value(status.state))
        entry.status.error_code = status.error_code.value[0]
        entry.status.error_message = status.error_message
    return response


class ModelServicer(model_service_pb2_grpc.ModelServiceServicer):
    def __init__(self, service: InferenceService, manager: ModelManager):
        self.service = service
        self.manager = manager

    def GetModelStatus(self, request, context):
        try:
            return model_status(self.manager, model_spec_from_proto(request.model_spec))
        except errors.ServingError as err:
            context.abort(err.code, err.message)

    def HandleReloadConfigRequest(self, request, context):
        response = model_management_pb2.ReloadConfigResponse()
        try:
            self.manager.set_config(request.config)
        except ValueError as err:  # ConfigFileError: an invalid config is refused, the old stays
            response.status.error_code = grpc.StatusCode.INVALID_ARGUMENT.value[0]
            response.status.error_message = str(err)
        return response


def _check_port_free(address: str) -> None:
    """Bind and release ``address`` once with a plain socket: a port in use is then one
    readable error, not gRPC's C-level log line followed by a bare failure."""
    host, _, port = address.rpartition(":")
    host = host.strip("[]")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        family, kind, proto, _, sockaddr = socket.getaddrinfo(host or None, int(port),
                                                              type=socket.SOCK_STREAM)[0]
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as gRPC does
            probe.bind(sockaddr)
    except OSError as err:
        raise OSError(f"cannot bind gRPC server to {address}: {err.strerror or err}") from None


def build_grpc_server(service: InferenceService, manager: ModelManager, address: str,
                      max_workers: int, max_message_bytes: int, health=None, credentials=None):
    """Bind the services to ``address`` ("host:port"); returns (server, bound port).

    ``health`` (a visionpipe.serving.health.ModelHealth) adds grpc.health.v1.Health;
    ``credentials`` (grpc.ServerCredentials, see visionpipe.serving.tls) makes the port TLS-only."""
    options = [("grpc.max_receive_message_length", max_message_bytes),
               ("grpc.max_send_message_length", max_message_bytes),
               ("grpc.so_reuseport", 0)]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=max_workers,
                                                    thread_name_prefix="grpc"),
                         options=options, maximum_concurrent_rpcs=max_workers * 4)
    prediction_service_pb2_grpc.add_PredictionServiceServicer_to_server(PredictionServicer(service), server)
    model_service_pb2_grpc.add_ModelServiceServicer_to_server(ModelServicer(service, manager), server)
    if health is not None:
        health.add_to_server(server)
    _check_port_free(address)
    try:
        port = (server.add_secure_port(address, credentials) if credentials is not None
                else server.add_insecure_port(address))
    except RuntimeError:  # grpc >= 1.60 raises instead of returning 0
        port = 0
    if port == 0:
        raise OSError(f"cannot bind gRPC server to {address}")
    return server, port
