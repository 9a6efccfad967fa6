"""PredictionService.MultiInference as TF Serving answers it (real tensorflow_serving stubs)."""
from __future__ import annotations

import grpc
import pytest
import requests

from tests.serving.conftest import MODEL, push

CLASSIFY = "tensorflow/serving/classify"
REGRESS = "tensorflow/serving/regress"


@pytest.fixture(scope="module")
def server(tmp_path_factory, toy_versions):
    """Version 1: the export contract's signatures; version 2 adds serving_regress."""
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer
    from tests.support.toy_model import write_toy_classifier

    root = tmp_path_factory.mktemp("multi")
    regression_model = write_toy_classifier(root / "export", seed=2, model_name=MODEL, regression=True)
    base = root / MODEL
    base.mkdir()
    push(base, 1, toy_versions[1])
    push(base, 2, regression_model)
    config = root / "models.config"
    config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{base}" '
                      f'model_platform: "tensorflow" model_version_policy {{ all {{}} }} '
                      f'version_labels {{ key: "canary" value: 2 }} }} }}')
    options = ServerOptions(port=0, rest_api_port=0, model_config_file=str(config),
                            file_system_poll_wait_seconds=0)
    with ModelServer(options) as running:
        yield running


@pytest.fixture(scope="module")
def stub(server):
    from tensorflow_serving.apis import prediction_service_pb2_grpc

    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        yield prediction_service_pb2_grpc.PredictionServiceStub(channel)


def multi_request(images, *tasks, context=False):
    """tasks: (signature_name, method_name[, model name[, version or label]])."""
    from tensorflow_serving.apis import inference_pb2

    request = inference_pb2.MultiInferenceRequest()
    for signature, method, *rest in tasks:
        task = request.tasks.add(method_name=method)
        task.model_spec.name = rest[0] if rest else MODEL
        task.model_spec.signature_name = signature
        if len(rest) > 1:
            if isinstance(rest[1], int):
                task.model_spec.version.value = rest[1]
            else:
                task.model_spec.version_label = rest[1]
    if context:  # the image in the context, merged into each (otherwise empty) example
        request.input.example_list_with_context.context.features.feature[
            "image/encoded"].bytes_list.value.append(images[0])
        for _ in images:
            request.input.example_list_with_context.examples.add()
    else:
        for image in images:
            example = request.input.example_list.examples.add()
            example.features.feature["image/encoded"].bytes_list.value.append(image)
    return request


def test_classify_and_regress_share_one_input(stub, png_bytes):
    from tensorflow_serving.apis import classification_pb2
    from tests.support.toy_model import sample_image

    images = [png_bytes, sample_image(32, seed=11)]
    response = stub.MultiInference(multi_request(images, ("serving_examples", CLASSIFY),
                                                 ("serving_regress", REGRESS)), timeout=30)
    assert len(response.results) == 2
    classify, regress = response.results
    assert classify.WhichOneof("result") == "classification_result"
    assert regress.WhichOneof("result") == "regression_result"
    assert [(r.model_spec.name, r.model_spec.version.value, r.model_spec.signature_name)
            for r in response.results] == [(MODEL, 2, "serving_examples"), (MODEL, 2, "serving_regress")]
    rows = classify.classification_result.classifications
    assert len(rows) == 2 and [c.label for c in rows[0].classes] == ["cat", "dog", "bird"]
    # The regression signature returns the top class probability: the same model on the same input.
    values = [r.value for r in regress.regression_result.regressions]
    assert values == pytest.approx([max(c.score for c in row.classes) for row in rows], abs=1e-6)
    assert values[0] != pytest.approx(values[1])

    # Each task answers what its single-task API answers.
    single = classification_pb2.ClassificationRequest(input=multi_request(images).input)
    single.model_spec.name = MODEL
    single.model_spec.signature_name = "serving_examples"
    assert stub.Classify(single, timeout=30).result == classify.classification_result


def test_one_task_context_input_and_version_choices(stub, png_bytes):
    response = stub.MultiInference(multi_request([png_bytes] * 3, ("serving_examples", CLASSIFY, MODEL, 1),
                                                 context=True), timeout=30)
    assert response.results[0].model_spec.version.value == 1
    assert len(response.results[0].classification_result.classifications) == 3
    # The first task picks the version; later tasks may leave it out or name the same one.
    for second in ((), (2,), ("canary",)):
        response = stub.MultiInference(multi_request(
            [png_bytes], ("serving_examples", CLASSIFY, MODEL, "canary"),
            ("serving_regress", REGRESS, MODEL, *second)), timeout=30)
        assert [r.model_spec.version.value for r in response.results] == [2, 2]


@pytest.mark.parametrize("tasks, code, fragment", [
    ((), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified"),
    ((("serving_examples", CLASSIFY, ""),), grpc.StatusCode.INVALID_ARGUMENT, "ModelSpec has no name specified"),
    ((("serving_examples", CLASSIFY, "nope"),), grpc.StatusCode.NOT_FOUND, "Servable not found"),
    ((("serving_examples", CLASSIFY, MODEL, 9),), grpc.StatusCode.NOT_FOUND, f"Specific({MODEL}, 9)"),
    ((("serving_examples", CLASSIFY), ("serving_regress", REGRESS, "other")),
     grpc.StatusCode.INVALID_ARGUMENT, "must access the same model name"),
    ((("serving_examples", CLASSIFY), ("serving_regress", REGRESS, "")),
     grpc.StatusCode.INVALID_ARGUMENT, "Found ModelSpec with an empty model name"),
    ((("serving_examples", CLASSIFY, MODEL, 2), ("serving_regress", REGRESS, MODEL, 1)),
     grpc.StatusCode.INVALID_ARGUMENT, "must access the same model version"),
    ((("serving_examples", CLASSIFY), ("serving_examples", CLASSIFY)),
     grpc.StatusCode.INVALID_ARGUMENT, "Duplicate evaluation of signature: serving_examples"),
    ((("", CLASSIFY),),  # no name means serving_default, a predict signature
     grpc.StatusCode.INVALID_ARGUMENT, "method_name to be tensorflow/serving/classify. Was: tensorflow/serving/predict"),
    ((("serving_examples", CLASSIFY), ("nope", REGRESS)),
     grpc.StatusCode.INVALID_ARGUMENT, "Requested signature not found in model graph: nope"),
    ((("serving_regress", CLASSIFY),),
     grpc.StatusCode.INVALID_ARGUMENT, "Expected classification signature method_name"),
    ((("serving_examples", REGRESS),),
     grpc.StatusCode.INVALID_ARGUMENT, "Expected regression signature method_name"),
    ((("serving_default", "tensorflow/serving/predict"),),
     grpc.StatusCode.UNIMPLEMENTED, "Unsupported signature method_name: tensorflow/serving/predict"),
], ids=["no_tasks", "no_name", "unknown_model", "unknown_version", "mixed_models", "empty_name", "mixed_versions",
        "duplicate_signature", "default_signature", "unknown_signature", "classify_on_regress",
        "regress_on_classify", "predict_method"])
def test_errors_use_tf_serving_status_codes_and_messages(stub, png_bytes, tasks, code, fragment):
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(multi_request([png_bytes], *tasks), timeout=30)
    assert info.value.code() == code and fragment in info.value.details(), info.value.details()


def test_empty_input_and_bad_examples_are_invalid_argument(stub, png_bytes):
    request = multi_request([], ("serving_examples", CLASSIFY))
    request.input.ClearField("kind")
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(request, timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    with pytest.raises(grpc.RpcError) as info:
        stub.MultiInference(multi_request([b"not an image"], ("serving_examples", CLASSIFY)), timeout=30)
    assert info.value.code() == grpc.StatusCode.INVALID_ARGUMENT


def test_requests_are_counted_and_rest_has_no_multi_inference(server, stub, png_bytes):
    stub.MultiInference(multi_request([png_bytes], ("serving_examples", CLASSIFY)), timeout=30)
    metrics = server.metrics.render().decode()
    assert ('request_count_total{api="multi_inference",model_name="toy",'
            'signature_name="serving_examples",status="OK"}') in metrics
    # TF Serving's HTTP server exposes classify, regress and predict only (g3doc/performance.md).
    for verb in ("multi_inference", "multiInference", "multiinference"):
        response = requests.post(f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:{verb}",
                                 json={}, timeout=30)
        assert response.status_code == 404 and "Malformed request" in response.json()["error"]
