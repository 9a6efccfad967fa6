import json
import os

import pytest

from visionpipe.cli.main import main

COMPONENTS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
              "Trainer", "Evaluator", "LoadCheck", "VisionPusher"}


def _strings(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node
        if node[:1] in "{[":  # exec properties hold JSON (the config) as strings
            try:
                yield from _strings(json.loads(node))
            except ValueError:
                pass


def test_kubeflow_compile_writes_a_spec_with_every_component_on_the_given_image(tmp_path):
    spec_file = tmp_path / "spec.json"
    code = main(["compile", "--config", "configs/digits.yaml", "--target", "kubeflow",
                 "--output", str(spec_file), "--image", "gcr.io/acme/visionpipe:1.0",
                 "--pipeline_root", "gs://bucket/root", "push.serving_root=gs://bucket/serving",
                 "data.num_images=40"])
    assert code == 0
    document = json.loads(spec_file.read_text())
    spec = document["pipelineSpec"]
    tasks = set(spec["root"]["dag"]["tasks"])
    assert COMPONENTS <= tasks
    executors = spec["deploymentSpec"]["executors"]
    images = {e["container"]["image"] for e in executors.values() if "container" in e}
    assert images == {"gcr.io/acme/visionpipe:1.0"}
    classes = {e["container"]["args"][1] for e in executors.values()
               if "container" in e and e["container"]["args"][0] == "--executor_class_path"}
    assert "visionpipe.components.pusher.executor.Executor" in classes
    assert "visionpipe.components.load_check.executor.Executor" in classes
    trainer = spec["components"]["Trainer"]
    assert "custom_config" in json.dumps(trainer) or "custom_config" in json.dumps(spec["root"])

    text = spec_file.read_text()
    assert document["runtimeConfig"]["gcsOutputDirectory"] == "gs://bucket/root"
    assert str(tmp_path) not in text and os.getcwd() not in text
    # no string (nor one inside the JSON config strings) is a path of this machine
    host_paths = [s for s in _strings(document) if s.startswith("/") and os.path.exists(s.split()[0])]
    assert host_paths == []
    assert "gs://bucket/root/schema/schema-" in text
    assert list((tmp_path / "schema").glob("schema-*.pbtxt"))


@pytest.mark.parametrize("argv, named", [
    ([], "--pipeline_root runs/digits/pipeline_root: a path on this machine"),
    (["--pipeline_root", "gs://b/r"], "push.serving_root serving_models: a path on this machine"),
    (["--pipeline_root", "gs://b/r", "push.serving_root=gs://b/s", "data.source=folder",
      "data.path=/data/digits", "data.class_names=[a,b]"], "data.path /data/digits"),
])
def test_kubeflow_compile_refuses_a_path_of_this_machine(tmp_path, capsys, argv, named):
    assert main(["compile", "--config", "configs/digits.yaml", "--output", str(tmp_path / "s.json"),
                 *argv]) == 2
    assert named in capsys.readouterr().err


def test_a_spec_with_several_training_workers_runs_the_trainer_as_a_vertex_job_of_that_size(tmp_path):
    spec_file = tmp_path / "spec.json"
    assert main(["compile", "--config", "configs/digits.yaml", "--target", "kubeflow",
                 "--output", str(spec_file), "--pipeline_root", "gs://bucket/root",
                 "--image", "gcr.io/acme/visionpipe:1.0", "data.num_images=40",
                 "push.serving_root=gs://bucket/serving", "train.strategy=multi_worker",
                 "train.workers=3", "train.vertex_project=acme", "train.machine_type=n1-highmem-8"]) == 0
    text = spec_file.read_text()
    trainer = json.dumps(json.loads(text)["pipelineSpec"]["deploymentSpec"]["executors"])
    assert "google_cloud_ai_platform.trainer.executor" in trainer
    args = json.loads(text)["pipelineSpec"]["root"]["dag"]["tasks"]["Trainer"]
    found = json.dumps(args)
    for piece in ("worker_pool_specs", "n1-highmem-8", "gcr.io/acme/visionpipe:1.0", "acme"):
        assert piece in found, piece
    assert '\\"replica_count\\": 2' in found or '"replica_count": 2' in found


def test_several_workers_need_the_multi_worker_strategy_and_a_project():
    import pytest

    from visionpipe.core.config import load_config
    from visionpipe.core.errors import ConfigError

    with pytest.raises(ConfigError, match="train.workers: more than one worker needs train.strategy"):
        load_config(overrides=["train.workers=2"])
    with pytest.raises(ConfigError, match="train.vertex_project: is required"):
        load_config(overrides=["train.workers=2", "train.strategy=multi_worker"])
