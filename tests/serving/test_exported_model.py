"""A classifier exported by visionpipe.models.export serves over REST and gRPC, warm-up included."""
from __future__ import annotations

import base64

import pytest
import requests

from tests.serving.helpers import grpc_predict_version

CLASSES = ["circle", "square", "triangle"]


@pytest.fixture(scope="module")
def exported_base(tmp_path_factory):
    from visionpipe.models.export import export_saved_model
    from visionpipe.tasks import get_task
    from visionpipe.core.config import load_config
    from tests.support.toy_model import sample_image

    config = load_config(None, ["model.image_size=32", "model.width=8", "model.top_k=2"])
    task = get_task(config, CLASSES)
    base = tmp_path_factory.mktemp("exported") / "shapes"
    export_saved_model(task.build_model(), task, str(base / "1"), [sample_image(32), sample_image(40)], "shapes")
    return base


def test_pipeline_export_serves_predict_and_classify(exported_base, start_server, png_bytes):
    server = start_server(model_name="shapes", model_base_path=str(exported_base))
    url = f"http://127.0.0.1:{server.rest_port}/v1/models/shapes"
    b64 = {"b64": base64.b64encode(png_bytes).decode("ascii")}
    predicted = requests.post(url + ":predict", json={"instances": [b64]}, timeout=30)
    assert predicted.status_code == 200, predicted.text
    row = predicted.json()["predictions"][0]
    assert len(row["probabilities"]) == 3 and set(row["top_k_names"]) <= set(CLASSES)
    classified = requests.post(url + ":classify", timeout=30, json={
        "signature_name": "serving_examples", "examples": [{"image/encoded": b64}]})
    assert classified.status_code == 200, classified.text
    assert [label for label, _ in classified.json()["result"][0]] == CLASSES
    assert grpc_predict_version(server.grpc_port, png_bytes, model="shapes") == 1
