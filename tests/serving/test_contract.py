"""The server holds to TF Serving's documented REST and gRPC behaviour and status codes."""
from __future__ import annotations

import base64
import json

import grpc
import pytest
import requests

from tests.serving.conftest import MODEL, push

B64 = lambda data: {"b64": base64.b64encode(data).decode("ascii")}  # noqa: E731


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_versions):
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    base = tmp_path_factory.mktemp("contract") / MODEL
    base.mkdir()
    push(base, 1, toy_versions[1])
    push(base, 2, toy_versions[2])
    config = tmp_path_factory.mktemp("contract_config") / "models.config"
    config.write_text(f"""
model_config_list {{
  config {{
    name: "{MODEL}"
    base_path: "{base}"
    model_platform: "tensorflow"
    model_version_policy {{ all {{}} }}
    version_labels {{ key: "stable" value: 1 }}
    version_labels {{ key: "canary" value: 2 }}
  }}
}}""")
    options = ServerOptions(port=0, rest_api_port=0, model_config_file=str(config),
                            file_system_poll_wait_seconds=0, max_request_bytes=200_000,
                            max_image_pixels=64 * 64)
    with ModelServer(options) as running:
        yield running


@pytest.fixture(scope="module")
def rest(server):
    session = requests.Session()
    base = f"http://127.0.0.1:{server.rest_port}"

    def call(method, path, **kwargs):
        return session.request(method, base + path, timeout=30, **kwargs)
    yield call
    session.close()


@pytest.fixture(scope="module")
def stubs(server):
    from tensorflow_serving.apis import model_service_pb2_grpc, prediction_service_pb2_grpc

    channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
    yield (prediction_service_pb2_grpc.PredictionServiceStub(channel),
           model_service_pb2_grpc.ModelServiceStub(channel))
    channel.close()


def predict_request(images, name=MODEL, version=None, label=None, signature=""):
    import tensorflow as tf
    from tensorflow_serving.apis import predict_pb2

    request = predict_pb2.PredictRequest()
    request.model_spec.name = name
    request.model_spec.signature_name = signature
    if version is not None:
        request.model_spec.version.value = version
    if label is not None:
        request.model_spec.version_label = label
    request.inputs["images"].CopyFrom(tf.make_tensor_proto(images, dtype=tf.string))
    return request


def assert_error(response, status: int, fragment: str):
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"} and fragment in body["error"], body


# --- REST: status and metadata ---------------------------------------------------------------
def test_rest_status_lists_every_version_with_state_and_ok_status(rest):
    body = rest("GET", f"/v1/models/{MODEL}").json()
    assert body == {"model_version_status": [
        {"version": "2", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}},
        {"version": "1", "state": "AVAILABLE", "status": {"error_code": "OK", "error_message": ""}}]}
    assert rest("GET", f"/v1/models/{MODEL}/versions/1").json()["model_version_status"][0]["version"] == "1"
    assert rest("GET", f"/v1/models/{MODEL}/labels/canary").json()["model_version_status"][0]["version"] == "2"


def test_rest_metadata_shows_the_three_contract_signatures(rest):
    body = rest("GET", f"/v1/models/{MODEL}/versions/1/metadata").json()
    assert body["model_spec"] == {"name": MODEL, "signature_name": "", "version": "1"}
    signatures = body["metadata"]["signature_def"]["signature_def"]
    assert set(signatures) >= {"serving_default", "serving_examples", "serving_tensor"}
    assert signatures["serving_default"]["inputs"]["images"]["dtype"] == "DT_STRING"
    assert signatures["serving_examples"]["method_name"] == "tensorflow/serving/classify"


# --- REST: predict formats ------------------------------------------------------------------
def test_rest_row_format_answers_one_prediction_object_per_instance(rest, png_bytes):
    response = rest("POST", f"/v1/models/{MODEL}:predict",
                    json={"instances": [B64(png_bytes), B64(png_bytes)]})
    assert response.status_code == 200, response.text
    predictions = response.json()["predictions"]
    assert len(predictions) == 2 and predictions[0] == predictions[1]
    assert set(predictions[0]) == {"probabilities", "top_k_ids", "top_k_names", "top_k_scores"}
    assert abs(sum(predictions[0]["probabilities"]) - 1) < 1e-5
    assert predictions[0]["top_k_names"][0] in ("cat", "dog", "bird")


def test_rest_columnar_format_answers_outputs_with_batch_dimension(rest, png_bytes):
    row = rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [{"images": B64(png_bytes)}]})
    column = rest("POST", f"/v1/models/{MODEL}:predict", json={"inputs": {"images": [B64(png_bytes)]}})
    assert column.status_code == 200, column.text
    outputs = column.json()["outputs"]
    assert outputs["top_k_ids"] == [row.json()["predictions"][0]["top_k_ids"]]


def test_rest_version_and_label_urls_pick_that_version(rest, png_bytes):
    payload = {"instances": [B64(png_bytes)]}
    v1 = rest("POST", f"/v1/models/{MODEL}/versions/1:predict", json=payload).json()
    v2 = rest("POST", f"/v1/models/{MODEL}/versions/2:predict", json=payload).json()
    stable = rest("POST", f"/v1/models/{MODEL}/labels/stable:predict", json=payload).json()
    latest = rest("POST", f"/v1/models/{MODEL}:predict", json=payload).json()
    assert v1 != v2 and stable == v1 and latest == v2


def test_rest_float_signature_takes_pixel_lists(rest):
    pixels = [[[100.0, 50.0, 25.0]] * 32] * 32
    response = rest("POST", f"/v1/models/{MODEL}:predict",
                    json={"signature_name": "serving_tensor", "instances": [pixels]})
    assert response.status_code == 200, response.text
    assert len(response.json()["predictions"][0]["probabilities"]) == 3


def test_rest_classify_returns_label_score_pairs_per_example(rest, png_bytes):
    response = rest("POST", f"/v1/models/{MODEL}:classify", json={
        "signature_name": "serving_examples",
        "examples": [{"image/encoded": B64(png_bytes)}, {"image/encoded": B64(png_bytes)}]})
    assert response.status_code == 200, response.text
    result = response.json()["result"]
    assert len(result) == 2 and [label for label, _ in result[0]] == ["cat", "dog", "bird"]
    assert abs(sum(score for _, score in result[0]) - 1) < 1e-5


def test_rest_classify_merges_context_features_into_examples(rest, png_bytes):
    response = rest("POST", f"/v1/models/{MODEL}:classify", json={
        "signature_name": "serving_examples", "context": {"image/encoded": B64(png_bytes)},
        "examples": [{"image/filename": "a.png"}]})
    assert response.status_code == 200, response.text


def test_rest_classify_on_a_predict_signature_is_400(rest, png_bytes):
    response = rest("POST", f"/v1/models/{MODEL}:classify",
                    json={"examples": [{"image/encoded": B64(png_bytes)}]})
    assert_error(response, 400, "Expected classification signature method_name")


def test_rest_regress_without_a_regression_signature_is_400(rest, png_bytes):
    response = rest("POST", f"/v1/models/{MODEL}:regress", json={
        "signature_name": "serving_examples", "examples": [{"image/encoded": B64(png_bytes)}]})
    assert_error(response, 400, "Expected regression signature method_name")


# --- REST: errors ----------------------------------------------------------------------------
def test_rest_unknown_model_is_404(rest, png_bytes):
    assert_error(rest("POST", "/v1/models/nope:predict", json={"instances": [B64(png_bytes)]}),
                 404, "Servable not found")
    assert_error(rest("GET", "/v1/models/nope"), 404, "nope")


def test_rest_unknown_version_is_404(rest, png_bytes):
    assert_error(rest("POST", f"/v1/models/{MODEL}/versions/9:predict", json={"instances": [B64(png_bytes)]}),
                 404, f"Specific({MODEL}, 9)")
    assert_error(rest("GET", f"/v1/models/{MODEL}/versions/9"), 404, "version 9")


def test_rest_unknown_label_is_400(rest, png_bytes):
    assert_error(rest("POST", f"/v1/models/{MODEL}/labels/beta:predict",
                      json={"instances": [B64(png_bytes)]}), 400, "Unrecognized servable version label")


def test_rest_bad_json_is_400(rest):
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", data=b'{"instances": [}'), 400,
                 "JSON Parse error")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", data=b"[1, 2]"), 400, "JSON object")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": []}), 400, "non-empty")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [1], "inputs": [1]}),
                 400, "exactly one of")


def test_rest_wrong_dtype_is_400(rest, png_bytes):
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [1.5]}), 400,
                 "string tensor")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict",
                      json={"signature_name": "serving_tensor", "instances": [B64(png_bytes)]}),
                 400, "expects float32 numbers")


def test_rest_wrong_shape_is_400(rest):
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict",
                      json={"signature_name": "serving_tensor", "instances": [[[[1.0, 2.0, 3.0]] * 5] * 5]}),
                 400, "expects shape [-1, 32, 32, 3]")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict",
                      json={"signature_name": "serving_tensor", "instances": [[[1.0], [1.0, 2.0]]]}),
                 400, "ragged")


def test_rest_unknown_signature_and_input_are_400(rest, png_bytes):
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict",
                      json={"signature_name": "nope", "instances": [B64(png_bytes)]}), 400, "not found")
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict",
                      json={"instances": [{"pixels": B64(png_bytes)}]}), 400, "'pixels' is not in the signature")


def test_rest_invalid_base64_is_400(rest):
    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [{"b64": "@@not base64@@"}]}),
                 400, "Unable to base64 decode")


def test_rest_image_that_does_not_decode_is_400(rest):
    response = rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [B64(b"GIF89a truncated")]})
    assert response.status_code == 400, response.text
    assert "Invalid GIF data" in response.json()["error"]


def test_rest_image_over_the_pixel_limit_is_rejected_before_decoding(rest):
    from tests.support.toy_model import sample_image

    assert_error(rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [B64(sample_image(65))]}),
                 400, "exceeds the limit of 4096 pixels")
    assert_error(rest("POST", f"/v1/models/{MODEL}:classify", json={
        "signature_name": "serving_examples", "examples": [{"image/encoded": B64(sample_image(65))}]}),
        400, "image of 65x65 pixels exceeds the limit")


def test_rest_oversize_request_is_429_before_the_body_is_read(rest):
    response = rest("POST", f"/v1/models/{MODEL}:predict", data=b"x" * 300_000)
    assert_error(response, 429, "exceeds the limit of 200000 bytes")


def test_rest_malformed_url_is_404(rest):
    assert_error(rest("GET", "/v2/anything"), 404, "Malformed request")
    assert_error(rest("POST", f"/v1/models/{MODEL}:explain", json={}), 404, "Malformed request")
    assert_error(rest("GET", f"/v1/models/{MODEL}:predict"), 404, "Malformed request")


def test_path_traversal_in_model_names_never_reaches_the_file_system(rest):
    for path in ("/v1/models/..%2F..%2Fetc/metadata", f"/v1/models/{MODEL}/versions/..%2F1",
                 "/v1/models/../../etc/passwd"):
        assert rest("GET", path).status_code == 404


def test_health_and_metrics_endpoints_answer(rest, png_bytes):
    health = rest("GET", "/healthz")
    assert health.status_code == 200 and health.json()["models"] == {MODEL: [1, 2]}
    rest("POST", f"/v1/models/{MODEL}:predict", json={"instances": [B64(png_bytes)]})
    text = rest("GET", "/monitoring/prometheus/metrics").text
    assert (':tensorflow:serving:request_count_total{api="predict",model_name="toy",'
            'signature_name="serving_default",status="OK"}') in text
    assert ":tensorflow:serving:request_latency_bucket" in text


# --- gRPC ------------------------------------------------------------------------------------
def test_grpc_predict_names_the_version_that_answered(stubs, png_bytes):
    prediction, _ = stubs
    response = prediction.Predict(predict_request([png_bytes]), timeout=30)
    assert response.model_spec.version.value == 2
    assert response.model_spec.signature_name == "serving_default"
    assert list(response.outputs["probabilities"].tensor_shape.dim)[1].size == 3
    assert prediction.Predict(predict_request([png_bytes], label="stable"), timeout=30).model_spec.version.value == 1


def test_grpc_output_filter_returns_only_the_named_outputs(stubs, png_bytes):
    prediction, _ = stubs
    request = predict_request([png_bytes])
    request.output_filter.append("top_k_names")
    assert set(prediction.Predict(request, timeout=30).outputs) == {"top_k_names"}


@pytest.mark.parametrize("mutate, code", [
    (lambda r: setattr(r.model_spec, "name", "nope"), grpc.StatusCode.NOT_FOUND),
    (lambda r: r.model_spec.version.__setattr__("value", 9), grpc.StatusCode.NOT_FOUND),
    (lambda r: setattr(r.model_spec, "signature_name", "serving_tensor"), grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["images"].CopyFrom(__import__("tensorflow").make_tensor_proto([1.0, 2.0])),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["images"].CopyFrom(__import__("tensorflow").make_tensor_proto([[b"a"]])),
     grpc.StatusCode.INVALID_ARGUMENT),
    (lambda r: r.inputs["images"].CopyFrom(__import__("tensorflow").make_tensor_proto([b"not an image"])),
     grpc.StatusCode.INVALID_ARGUMENT),
], ids=["unknown_model", "unknown_version", "missing_input", "wrong_dtype", "wrong_shape", "undecodable"])
def test_grpc_predict_errors_use_tf_serving_status_codes(stubs, png_bytes, mutate, code):
    prediction, _ = stubs
    request = predict_request([png_bytes])
    mutate(request)
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(request, timeout=30)
    assert info.value.code() == code, info.value.details()


def test_grpc_oversize_message_is_resource_exhausted(stubs):
    prediction, _ = stubs
    with pytest.raises(grpc.RpcError) as info:
        prediction.Predict(predict_request([b"x" * 300_000]), timeout=30)
    assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_grpc_classify_and_metadata_and_status(stubs, png_bytes):
    import tensorflow as tf
    from tensorflow_serving.apis import (classification_pb2, get_model_metadata_pb2,
                                         get_model_status_pb2)

    prediction, model_service = stubs
    request = classification_pb2.ClassificationRequest()
    request.model_spec.name = MODEL
    request.model_spec.signature_name = "serving_examples"
    example = request.input.example_list.examples.add()
    example.features.feature["image/encoded"].bytes_list.value.append(png_bytes)
    result = prediction.Classify(request, timeout=30).result.classifications[0]
    assert [c.label for c in result.classes] == ["cat", "dog", "bird"]

    metadata_request = get_model_metadata_pb2.GetModelMetadataRequest()
    metadata_request.model_spec.name = MODEL
    metadata_request.metadata_field.append("signature_def")
    signature_map = get_model_metadata_pb2.SignatureDefMap()
    prediction.GetModelMetadata(metadata_request, timeout=30).metadata["signature_def"].Unpack(signature_map)
    assert signature_map.signature_def["serving_tensor"].inputs["pixels"].dtype == tf.float32.as_datatype_enum

    status_request = get_model_status_pb2.GetModelStatusRequest()
    status_request.model_spec.name = MODEL
    states = model_service.GetModelStatus(status_request, timeout=30).model_version_status
    assert [(s.version, s.state) for s in states] == [
        (2, get_model_status_pb2.ModelVersionStatus.AVAILABLE),
        (1, get_model_status_pb2.ModelVersionStatus.AVAILABLE)]


def test_reload_config_adds_a_model_and_rejects_an_invalid_config(stubs, server, toy_versions, tmp_path, png_bytes):
    from tensorflow_serving.apis import model_management_pb2

    prediction, model_service = stubs
    base = tmp_path / "second"
    base.mkdir()
    push(base, 5, toy_versions[1])
    request = model_management_pb2.ReloadConfigRequest()
    from visionpipe.serving.model_config import load_model_server_config

    first = load_model_server_config(server.options.model_config_file).model_config_list.config[0]
    for name, path in ((MODEL, first.base_path), ("second", str(base))):
        model = request.config.model_config_list.config.add(name=name, base_path=path,
                                                            model_platform="tensorflow")
        if name == MODEL:
            model.model_version_policy.all.SetInParent()
    assert model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    answer = prediction.Predict(predict_request([png_bytes], name="second"), timeout=30)
    assert answer.model_spec.version.value == 5

    bad = model_management_pb2.ReloadConfigRequest()
    bad.config.model_config_list.config.add(name="x", base_path="")
    status = model_service.HandleReloadConfigRequest(bad, timeout=30).status
    assert status.error_code == grpc.StatusCode.INVALID_ARGUMENT.value[0] and "base_path" in status.error_message
    assert prediction.Predict(predict_request([png_bytes], name="second"), timeout=30).model_spec.version.value == 5


def test_other_http_methods_are_404_json(rest):
    for method in ("PUT", "DELETE", "PATCH"):
        assert_error(rest(method, f"/v1/models/{MODEL}", data=b"{}"), 404, f"Malformed request: {method}")


def test_server_refuses_a_decompression_bomb_even_under_a_higher_pixel_limit():
    import numpy as np

    from tests.components.image_example_gen_helpers import blank_png
    from visionpipe.serving.errors import ServingError
    from visionpipe.serving.servable import check_image_pixels

    bomb = np.array([blank_png(12000, 12000)], dtype=object)  # 144 Mpx, above PIL's guard
    with pytest.raises(ServingError, match=r"input 'images': image too large for PIL's "
                                           r"decompression-bomb limit.*\(--max_image_pixels\)"):
        check_image_pixels(bomb, 200_000_000, "images")
