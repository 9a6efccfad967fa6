"""LoadCheck refuses a model with a denied op (the model scan) unless push.allowed_ops names it."""
import os

import pytest
from tfx.types import standard_artifacts

from visionpipe.components.load_check import executor as load_check
from tests.serving.helpers import write_read_file_model


@pytest.fixture(scope="module")
def read_file_model_uri(tmp_path_factory):
    uri = tmp_path_factory.mktemp("read_file_model")
    write_read_file_model(uri / "Format-Serving")
    return uri


def _load_check(model_uri, tmp_path, allowed_ops=""):
    model = standard_artifacts.Model()
    model.uri = str(model_uri)
    infra = standard_artifacts.InfraBlessing()
    infra.uri = str(tmp_path / "infra")
    os.makedirs(infra.uri, exist_ok=True)
    load_check.Executor().Do({"model": [model]}, {"blessing": [infra]},
                             {"timeout_seconds": 300, "allowed_ops": allowed_ops})
    return infra


def test_model_reading_files_in_a_signature_is_not_blessed_naming_op_and_function(
        read_file_model_uri, tmp_path):
    infra = _load_check(read_file_model_uri, tmp_path)
    assert infra.get_int_custom_property("blessed") == 0
    reason = infra.get_string_custom_property("reason")
    assert "refused by the model scan: op ReadFile in function __inference_serve_" in reason


def test_allowed_op_passes_the_scan_and_the_check_goes_on_to_loading(read_file_model_uri, tmp_path):
    infra = _load_check(read_file_model_uri, tmp_path, allowed_ops="ReadFile")
    reason = infra.get_string_custom_property("reason")
    assert "model scan" not in reason and "no warm-up requests" in reason  # the next check


def test_push_allowed_ops_is_a_config_list():
    from visionpipe.core.config import load_config

    assert load_config().push.allowed_ops == []
    assert load_config(overrides=["push.allowed_ops=[ReadFile, PrintV2]"]).push.allowed_ops == [
        "ReadFile", "PrintV2"]


def test_the_pipeline_hands_push_allowed_ops_to_load_check(tmp_path):
    from visionpipe.core.config import load_config
    from visionpipe.pipeline.pipeline import create_pipeline

    config = load_config(overrides=[f"runner.output_dir={tmp_path}", "push.allowed_ops=[ReadFile]"])
    pipeline = create_pipeline(config, str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                               str(tmp_path), ["a", "b"])
    load_check = next(c for c in pipeline.components if c.id == "LoadCheck")
    assert load_check.exec_properties["allowed_ops"] == "ReadFile"
