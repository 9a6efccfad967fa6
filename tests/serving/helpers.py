"""Small helpers shared by the serving tests."""
from __future__ import annotations

import time

import grpc

from visionpipe.pipeline.local_beam_cluster import free_port  # noqa: F401 - the serving tests' import


def wait_for(condition, timeout: float = 30.0, interval: float = 0.05, what: str = "condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = condition()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def grpc_predict_version(port: int, image: bytes, model: str = "toy", timeout: float = 30.0) -> int:
    """Version that answered a gRPC Predict (raises grpc.RpcError on failure)."""
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
        stub = prediction_service_pb2_grpc.PredictionServiceStub(channel)
        return stub.Predict(request, timeout=timeout).model_spec.version.value


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q / 100 * (len(ordered) - 1))))]


def write_read_file_model(export_dir) -> str:
    """A SavedModel whose serving_default reads the file a request names (tf.io.read_file)."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    class Reader(tf.Module):
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serve(self, images):
            return {"length": tf.strings.length(images) + tf.strings.length(tf.io.read_file(images[0]))}

    module = Reader()
    tf.saved_model.save(module, str(export_dir), signatures={"serving_default": module.serve})
    return str(export_dir)
