"""LoadCheck and VisionPusher executors on real exported models."""
import json
import os
import shutil

import pytest
import tensorflow as tf
from tfx.types import standard_artifacts

from visionpipe.components.load_check import executor as load_check
from visionpipe.components.pusher import executor as pusher
from visionpipe.models import export
from visionpipe.tasks import get_task
from visionpipe.core.config import load_config


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A Trainer-style model artifact: <uri>/Format-Serving holds the SavedModel."""
    config = load_config(overrides=["model.image_size=16", "model.width=4"])
    task = get_task(config, ["a", "b"])
    uri = tmp_path_factory.mktemp("model")
    image = tf.io.encode_png(tf.zeros([20, 20, 3], tf.uint8)).numpy()
    export.export_saved_model(task.build_model(), task, str(uri / "Format-Serving"), [image], "m")
    return uri


def _artifact(cls, uri, **int_props):
    artifact = cls()
    artifact.uri = str(uri)
    os.makedirs(artifact.uri, exist_ok=True)
    for key, value in int_props.items():
        artifact.set_int_custom_property(key, value)
    return artifact


def _run_load_check(model_uri, tmp_path, blessed=1):
    model = _artifact(standard_artifacts.Model, model_uri)
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "mb", blessed=blessed)
    infra = _artifact(standard_artifacts.InfraBlessing, tmp_path / "infra")
    load_check.Executor().Do({"model": [model], "model_blessing": [blessing]},
                             {"blessing": [infra]}, {"timeout_seconds": 300})
    return model, blessing, infra


def _push(model, blessing, infra, tmp_path, root):
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    pusher.Executor().Do({"model": [model], "model_blessing": [blessing], "infra_blessing": [infra]},
                         {"pushed_model": [pushed]},
                         {"serving_root": str(root), "model_name": "m"})
    return pushed


def test_model_that_loads_and_answers_warmup_is_pushed_as_next_version(exported, tmp_path):
    model, blessing, infra = _run_load_check(exported, tmp_path)
    assert infra.get_int_custom_property("blessed") == 1
    assert "answered 1 warm-up requests" in infra.get_string_custom_property("reason")
    root = tmp_path / "serving"
    (root / "m" / "3").mkdir(parents=True)  # an existing version is never overwritten
    pushed = _push(model, blessing, infra, tmp_path, root)
    assert pushed.get_int_custom_property("pushed") == 1
    assert pushed.get_string_custom_property("pushed_version") == "4"
    assert (root / "m" / "4" / "saved_model.pb").exists()
    assert sorted(os.listdir(root / "m")) == ["3", "4"]  # no temporary folder left behind
    assert json.loads((tmp_path / "pushed" / "push_report.json").read_text())["version"] == 4


def test_model_that_fails_to_load_is_not_pushed(exported, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    pb = broken / "Format-Serving" / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[:200])  # truncated
    model, blessing, infra = _run_load_check(broken, tmp_path)
    assert infra.get_int_custom_property("blessed") == 0
    assert infra.get_string_custom_property("reason")
    pushed = _push(model, blessing, infra, tmp_path, tmp_path / "serving")
    assert pushed.get_int_custom_property("pushed") == 0
    assert "load check failed" in pushed.get_string_custom_property("not_pushed_reason")
    assert not (tmp_path / "serving" / "m").exists()


def test_not_blessed_model_is_not_pushed_and_not_load_checked(exported, tmp_path):
    model, blessing, infra = _run_load_check(exported, tmp_path, blessed=0)
    assert infra.get_int_custom_property("blessed") == 0
    assert infra.get_int_custom_property("skipped") == 1
    assert "evaluator did not bless" in infra.get_string_custom_property("reason")
    pushed = _push(model, blessing, infra, tmp_path, tmp_path / "serving")
    assert pushed.get_int_custom_property("pushed") == 0
    assert "evaluator did not bless" in pushed.get_string_custom_property("not_pushed_reason")


def test_model_without_warmup_requests_fails_the_load_check(exported, tmp_path):
    bare = tmp_path / "bare"
    shutil.copytree(exported, bare)
    os.remove(bare / "Format-Serving" / export.WARMUP_FILE)
    _, _, infra = _run_load_check(bare, tmp_path)
    assert infra.get_int_custom_property("blessed") == 0
    assert "no warm-up requests" in infra.get_string_custom_property("reason")


def test_a_rerun_with_an_identical_model_pushes_no_new_version(exported, tmp_path):
    model = _artifact(standard_artifacts.Model, exported)
    blessing = _artifact(standard_artifacts.ModelBlessing, tmp_path / "mb", blessed=1)
    root = tmp_path / "serving"

    def push(name, model_artifact):
        pushed = _artifact(standard_artifacts.PushedModel, tmp_path / name)
        pusher.Executor().Do({"model": [model_artifact], "model_blessing": [blessing]},
                             {"pushed_model": [pushed]}, {"serving_root": str(root), "model_name": "m"})
        return pushed

    assert push("first", model).get_int_custom_property("pushed") == 1
    again = push("again", model)
    assert again.get_int_custom_property("pushed") == 0
    assert again.get_string_custom_property("not_pushed_reason").startswith("identical to version 1")
    assert again.get_string_custom_property("pushed_destination") == str(root / "m" / "1")
    assert sorted(os.listdir(root / "m")) == ["1"]

    changed = tmp_path / "changed"
    shutil.copytree(exported, changed)
    (changed / "Format-Serving" / "assets.extra" / "note.txt").parent.mkdir(exist_ok=True)
    (changed / "Format-Serving" / "assets.extra" / "note.txt").write_text("one byte more")
    assert push("changed_push", _artifact(standard_artifacts.Model, changed)).get_string_custom_property(
        "pushed_version") == "2"
