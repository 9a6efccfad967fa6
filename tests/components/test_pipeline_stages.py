"""A task's extra pipeline stages: wired after the Evaluator, their files pushed with the model."""
import json

import pytest
from tfx.dsl.component.experimental.annotations import InputArtifact, OutputArtifact
from tfx.dsl.component.experimental.decorators import component
from tfx.types import standard_artifacts

from visionpipe.components import stages
from visionpipe.components.pusher import executor as pusher
from visionpipe.core.config import ConfigError, load_config
from visionpipe.pipeline.pipeline import create_pipeline
from visionpipe.tasks.classification.task import ClassificationTask

from .test_load_check_and_pusher import _artifact, _run_load_check, exported  # noqa: F401


@component
def WriteIndex(blessing: InputArtifact[standard_artifacts.ModelBlessing],  # noqa: N802 (a component)
               index: OutputArtifact[stages.PushFiles]):
    import os

    os.makedirs(os.path.join(index.uri, "index"), exist_ok=True)
    with open(os.path.join(index.uri, "index", "vectors.json"), "w") as f:
        json.dump([[0.0, 1.0]], f)


@stages.register_stage("test_index")
def _index_stage(config, inputs: stages.StageInputs):
    writer = WriteIndex(blessing=inputs.blessing).with_id("WriteIndex")
    return writer, writer.outputs["index"]


def test_a_declared_stage_is_wired_and_its_files_reach_the_pusher(monkeypatch, tmp_path):
    monkeypatch.setattr(ClassificationTask, "pipeline_stages", ("test_index",))
    config = load_config(overrides=[f"runner.output_dir={tmp_path}"])
    pipeline = create_pipeline(config, str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                               str(tmp_path), ["a", "b"])
    ids = [c.id for c in pipeline.components]
    assert ids.index("WriteIndex") > ids.index("Evaluator")
    pusher_node = next(c for c in pipeline.components if c.id == "VisionPusher")
    assert pusher_node.inputs[pusher.PUSH_FILES_KEY].producer_component_id == "WriteIndex"


def test_an_unknown_stage_is_a_config_error_naming_it(monkeypatch, tmp_path):
    monkeypatch.setattr(ClassificationTask, "pipeline_stages", ("no_such_stage",))
    with pytest.raises(ConfigError, match="'no_such_stage'"):
        create_pipeline(load_config(), str(tmp_path / "root"), str(tmp_path / "m.sqlite"),
                        str(tmp_path), ["a", "b"])


def test_stage_files_are_pushed_inside_the_version_and_never_overwrite_the_model(exported, tmp_path):  # noqa: F811
    model, blessing, infra = _run_load_check(exported, tmp_path)
    files = _artifact(stages.PushFiles, tmp_path / "files")
    (tmp_path / "files" / "index").mkdir()
    (tmp_path / "files" / "index" / "vectors.json").write_text("[]")
    pushed = _artifact(standard_artifacts.PushedModel, tmp_path / "pushed")
    inputs = {"model": [model], "model_blessing": [blessing], "infra_blessing": [infra],
              pusher.PUSH_FILES_KEY: [files]}
    pusher.Executor().Do(inputs, {"pushed_model": [pushed]},
                         {"serving_root": str(tmp_path / "serving"), "model_name": "m"})
    version = tmp_path / "serving" / "m" / "1"
    assert (version / "index" / "vectors.json").read_text() == "[]"
    assert (version / "saved_model.pb").exists()

    (tmp_path / "files" / "saved_model.pb").write_text("not a model")
    with pytest.raises(ValueError, match="would overwrite 'saved_model.pb'"):
        pusher.Executor().Do(inputs, {"pushed_model": [pushed]},
                             {"serving_root": str(tmp_path / "serving"), "model_name": "m"})
