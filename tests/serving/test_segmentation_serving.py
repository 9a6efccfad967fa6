"""A segmentation export (visionpipe.models.export, 32 px U-Net) pushed under a base path
answers the local server's gRPC Predict and REST :predict with the class map a direct call of
its serving_default gives, at the request image's own size; REST sends
``class_map_png_bytes`` as base64, which decodes to the same map, and (by default) no
probabilities."""
from __future__ import annotations

import base64
import io

import numpy as np
import pytest
import requests
from PIL import Image

import visionpipe  # noqa: F401
import tensorflow as tf

CLASSES = ["background", "circle", "square"]
MODEL = "segmenter"


def _png(pixels) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture(scope="module")
def segmenter(tmp_path_factory):
    from visionpipe.core.config import load_config
    from visionpipe.models.export import export_saved_model
    from visionpipe.tasks import get_task

    config = load_config(overrides=["task=segmentation", "model.image_size=32", "segmentation.width=4",
                                    "segmentation.depth=2"]).validate()
    task = get_task(config, CLASSES)
    model = task.build_model()
    base = tmp_path_factory.mktemp("segmentation_export") / MODEL
    export_saved_model(model, task, str(base / "1"))
    image = _png(np.random.default_rng(5).integers(0, 255, (40, 24, 3)))  # not the model size
    direct = tf.saved_model.load(str(base / "1")).signatures["serving_default"](images=tf.constant([image]))
    return base, image, direct["class_map"].numpy()[0]


def test_segmentation_export_answers_grpc_and_rest_with_the_direct_class_map(segmenter, start_server):
    import grpc
    from tensorflow_serving.apis import predict_pb2, prediction_service_pb2_grpc

    base, image, expected = segmenter
    assert expected.shape == (40, 24)
    server = start_server(model_name=MODEL, model_base_path=str(base))

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = MODEL
        request.inputs["images"].CopyFrom(tf.make_tensor_proto([image], dtype=tf.string))
        response = prediction_service_pb2_grpc.PredictionServiceStub(channel).Predict(request, timeout=30)
    assert response.model_spec.version.value == 1
    np.testing.assert_array_equal(tf.make_ndarray(response.outputs["class_map"])[0], expected)
    assert tf.make_ndarray(response.outputs["image_shape"]).tolist() == [[40, 24]]
    png = tf.make_ndarray(response.outputs["class_map_png_bytes"])[0]
    np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(png))), expected)

    url = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict"
    answer = requests.post(url, timeout=30, json={
        "instances": [{"b64": base64.b64encode(image).decode("ascii")}]})
    assert answer.status_code == 200, answer.text
    row = answer.json()["predictions"][0]
    # segmentation.serve_probabilities is off by default: no float per pixel and class
    assert set(row) == {"class_map", "class_map_png_bytes", "image_shape"}
    np.testing.assert_array_equal(np.asarray(row["class_map"]), expected)
    assert set(row["class_map_png_bytes"]) == {"b64"}
    decoded = Image.open(io.BytesIO(base64.b64decode(row["class_map_png_bytes"]["b64"])))
    np.testing.assert_array_equal(np.asarray(decoded), expected)
