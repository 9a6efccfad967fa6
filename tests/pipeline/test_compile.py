import json

from visionpipe.cli.main import main

COMPONENTS = {"ImageExampleGen", "StatisticsGen", "ImportSchemaGen", "ExampleValidator", "DataGate",
              "Trainer", "Evaluator", "LoadCheck", "VisionPusher"}


def test_kubeflow_compile_writes_a_spec_with_every_component_on_the_given_image(tmp_path):
    spec_file = tmp_path / "spec.json"
    code = main(["compile", "--config", "configs/digits.yaml", "--target", "kubeflow",
                 "--output", str(spec_file), "--image", "gcr.io/acme/visionpipe:1.0",
                 f"runner.output_dir={tmp_path}", "data.num_images=40"])
    assert code == 0
    spec = json.loads(spec_file.read_text())["pipelineSpec"]
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
