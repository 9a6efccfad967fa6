"""Malformed gRPC PredictRequests never crash the server or allocate past the request limit.

200 seeded random mutations of a valid request (wrong dtypes, huge shapes declared with little
content, huge and many strings, unknown models, versions and signatures, missing and extra
inputs, random tensor_content, flipped bytes of the serialized message) over loopback; each is
answered with a proper status.
"""
from __future__ import annotations

import random
import resource
import time

import grpc
import pytest

from tests.serving.conftest import MODEL, push

LIMIT = 1_000_000  # --max_request_bytes for this server
MUTATIONS = 200
SEED = 22
PREDICT = "/tensorflow.serving.PredictionService/Predict"
# What a malformed request may get back. INTERNAL only for bytes that do not parse as a
# PredictRequest (grpc-python's own answer when the request deserializer fails).
ANSWERS = {grpc.StatusCode.OK, grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.NOT_FOUND,
           grpc.StatusCode.RESOURCE_EXHAUSTED}


@pytest.fixture(scope="module")
def grpc_port(tmp_path_factory, toy_versions):
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    base = tmp_path_factory.mktemp("grpc_fuzz") / MODEL
    base.mkdir()
    push(base, 1, toy_versions[1])
    with ModelServer(ServerOptions(port=0, rest_api_port=0, model_name=MODEL, model_base_path=str(base),
                                   file_system_poll_wait_seconds=0, max_request_bytes=LIMIT,
                                   grpc_max_threads=4)) as server:
        yield server.grpc_port


def _valid_request(png: bytes):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = MODEL
    request.inputs["images"].CopyFrom(tf.make_tensor_proto([png], dtype=tf.string))
    return request


def _mutate(rng: random.Random, png: bytes):
    """(serialized request, what was done): one random malformation of a valid request."""
    from tensorflow.core.framework import types_pb2

    request = _valid_request(png)
    tensor = request.inputs["images"]
    kind = rng.choice(["dtype", "huge_shape", "negative_dim", "deep_rank", "content", "huge_string",
                       "many_strings", "unknown_signature", "unknown_model", "version", "label",
                       "missing_input", "extra_input", "renamed_input", "output_filter", "bytes",
                       "valid_float"])
    if kind == "dtype":
        tensor.dtype = rng.choice([types_pb2.DT_INVALID, types_pb2.DT_FLOAT, types_pb2.DT_INT64,
                                   types_pb2.DT_HALF, types_pb2.DT_COMPLEX128, types_pb2.DT_RESOURCE,
                                   types_pb2.DT_VARIANT, types_pb2.DT_BOOL, rng.randint(0, 500)])
    elif kind == "huge_shape":
        tensor.tensor_shape.ClearField("dim")
        for _ in range(rng.randint(1, 4)):
            tensor.tensor_shape.dim.add(size=rng.choice([2 ** 20, 2 ** 31, 2 ** 40, 2 ** 62]))
        if rng.random() < 0.5:
            tensor.ClearField("string_val")
            tensor.dtype = rng.choice([types_pb2.DT_FLOAT, types_pb2.DT_DOUBLE, types_pb2.DT_INT8])
            tensor.float_val.append(1.0) if tensor.dtype == types_pb2.DT_FLOAT else None
    elif kind == "negative_dim":
        tensor.tensor_shape.dim[0].size = -rng.randint(1, 2 ** 40)
    elif kind == "deep_rank":
        tensor.tensor_shape.ClearField("dim")
        for _ in range(rng.randint(2, 100)):
            tensor.tensor_shape.dim.add(size=1)
        if rng.random() < 0.3:
            tensor.tensor_shape.unknown_rank = True
    elif kind == "content":
        tensor.ClearField("string_val")
        tensor.dtype = rng.choice([types_pb2.DT_FLOAT, types_pb2.DT_UINT8, types_pb2.DT_INT32])
        tensor.tensor_content = rng.randbytes(rng.randint(0, 5000))
        tensor.tensor_shape.dim[0].size = rng.randint(0, 5000)
    elif kind == "huge_string":
        tensor.string_val[0] = rng.randbytes(rng.choice([10, 100_000, LIMIT + 10]))
    elif kind == "many_strings":
        tensor.string_val.extend([rng.randbytes(rng.randint(0, 20))] * rng.randint(1, 20_000))
        if rng.random() < 0.5:
            tensor.tensor_shape.dim[0].size = len(tensor.string_val)
    elif kind == "unknown_signature":
        request.model_spec.signature_name = rng.choice(["nope", "serving_examples", "", "\x00" * 50,
                                                        "serving_tensor", "a" * 10_000])
    elif kind == "unknown_model":
        request.model_spec.name = rng.choice(["", "other", "../toy", "toy\x00", "x" * 5000])
    elif kind == "version":
        request.model_spec.version.value = rng.choice([0, 2, -1, 2 ** 62])
    elif kind == "label":
        request.model_spec.version_label = rng.choice(["stable", "", "canary" * 100])
    elif kind == "missing_input":
        del request.inputs["images"]
    elif kind == "extra_input":
        request.inputs["extra"].CopyFrom(tensor)
    elif kind == "renamed_input":
        request.inputs["pixels"].CopyFrom(tensor)
        del request.inputs["images"]
    elif kind == "output_filter":
        request.output_filter.append(rng.choice(["nope", "probabilities", ""]))
    elif kind == "valid_float":
        request.model_spec.signature_name = "serving_tensor"
        request.inputs["pixels"].CopyFrom(tensor)
        del request.inputs["images"]
        pixels = request.inputs["pixels"]
        pixels.ClearField("string_val")
        pixels.dtype = types_pb2.DT_FLOAT
        pixels.tensor_shape.ClearField("dim")
        for size in rng.choice([(1, 32, 32, 3), (1, 32, 32), (2 ** 14, 2 ** 14, 3), (0, 32, 32, 3)]):
            pixels.tensor_shape.dim.add(size=size)
        pixels.float_val.extend([rng.uniform(-1e30, 1e30)] * rng.randint(1, 3))
    data = request.SerializeToString()
    if kind == "bytes":
        raw = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        data = bytes(raw)
    return data, kind


def test_malformed_predict_requests_get_proper_statuses_and_the_server_survives(grpc_port, png_bytes):
    from tensorflow_serving.apis import predict_pb2

    from tests.serving.helpers import grpc_predict_version

    rng = random.Random(SEED)
    max_rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux
    start = time.monotonic()
    seen = {}
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        predict = channel.unary_unary(PREDICT, request_serializer=None, response_deserializer=None)
        for i in range(MUTATIONS):
            data, kind = _mutate(rng, png_bytes)
            try:
                predict(data, timeout=20)
                code = grpc.StatusCode.OK
            except grpc.RpcError as err:
                code = err.code()
            try:
                predict_pb2.PredictRequest.FromString(data)
                parses = True
            except Exception:  # noqa: BLE001 - a DecodeError
                parses = False
            allowed = ANSWERS | ({grpc.StatusCode.INTERNAL} if not parses else set())
            assert code in allowed, f"mutation {i} ({kind}): {code}"
            seen.setdefault(kind, set()).add(code.name)
    elapsed = time.monotonic() - start
    grown_mib = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - max_rss_before) / 1024
    assert grpc_predict_version(grpc_port, png_bytes) == 1  # still serving
    assert grown_mib < 256, f"peak memory grew by {grown_mib:.0f} MiB: {seen}"
    assert elapsed < 30, f"{MUTATIONS} mutations took {elapsed:.1f}s"
    assert len(seen) >= 15, seen  # the mutations covered the kinds


@pytest.mark.parametrize("dims, dtype, expected", [
    ([2 ** 40], "DT_FLOAT", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ([2 ** 20, 2 ** 20], "DT_STRING", grpc.StatusCode.RESOURCE_EXHAUSTED),
    ([-3], "DT_STRING", grpc.StatusCode.INVALID_ARGUMENT),
    ([1], "DT_VARIANT", grpc.StatusCode.INVALID_ARGUMENT),
])
def test_declared_shape_is_checked_before_allocating(grpc_port, png_bytes, dims, dtype, expected):
    from tensorflow.core.framework import types_pb2
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    request = _valid_request(png_bytes)
    tensor = request.inputs["images"]
    tensor.dtype = types_pb2.DataType.Value(dtype)
    tensor.tensor_shape.ClearField("dim")
    for size in dims:
        tensor.tensor_shape.dim.add(size=size)
    if dtype == "DT_FLOAT":
        tensor.ClearField("string_val")
        tensor.float_val.append(0.5)
    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        with pytest.raises(grpc.RpcError) as err:
            prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=10)
    assert err.value.code() == expected, err.value.details()


def test_unknown_model_is_not_found_and_missing_input_is_invalid(grpc_port, png_bytes):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{grpc_port}") as channel:
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        request = _valid_request(png_bytes)
        request.model_spec.name = "other"
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.NOT_FOUND
        request = _valid_request(png_bytes)
        del request.inputs["images"]
        with pytest.raises(grpc.RpcError) as err:
            stub.Predict(request, timeout=10)
        assert err.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert "Missing but required: {images}" in err.value.details()
