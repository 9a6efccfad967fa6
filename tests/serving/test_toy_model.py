"""The serving tests' toy model is what the real export writes, not a copy of it."""


def _methods(export_dir):
    from tensorflow.core.protobuf import saved_model_pb2

    saved_model = saved_model_pb2.SavedModel.FromString((export_dir / "saved_model.pb").read_bytes())
    return {name: signature.method_name
            for name, signature in saved_model.meta_graphs[0].signature_def.items()}


def test_toy_model_has_the_export_contract_files_and_method_names(toy_versions):
    from visionpipe.models import export

    toy = toy_versions[1]
    assert export.read_class_names(str(toy)) == ["cat", "dog", "bird"]  # assets/labels.txt
    assert not (toy / "assets" / "class_names.txt").exists()
    assert export.read_task_name(str(toy)) == "classification"
    assert [r.model_spec.signature_name for r in export.read_warmup_requests(str(toy))] == [
        "serving_default"]
    methods = _methods(toy)
    assert methods["serving_examples"] == "tensorflow/serving/classify"
    assert methods["serving_default"] == methods["serving_tensor"] == "tensorflow/serving/predict"


def test_regressing_toy_adds_a_regress_signature_to_the_real_export(tmp_path):
    from tests.support.toy_model import write_toy_classifier

    methods = _methods(write_toy_classifier(tmp_path / "1", regression=True))
    assert methods["serving_regress"] == "tensorflow/serving/regress"
    assert methods["serving_examples"] == "tensorflow/serving/classify"
