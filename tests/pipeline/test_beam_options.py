"""runner.beam_runner / runner.beam_args reach every Beam component unchanged; the
multi-processing DirectRunner gives the same Examples as the in-process one."""
import glob
import json

import pytest
import tensorflow as tf

from visionpipe.cli.main import main
from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError

FLINK = ["runner.beam_runner=flink",
         "runner.beam_args=[--flink_master=flink-jobmanager:8081, --environment_type=EXTERNAL, "
         "--environment_config=localhost:50000, --parallelism=4]"]


def test_runner_options_are_passed_to_beam_as_given(tmp_path):
    from visionpipe.pipeline.runners import build_pipeline

    config = load_config("configs/digits.yaml", [*FLINK, "data.num_images=40",
                                                 f"runner.output_dir={tmp_path}"])
    expected = ["--runner=FlinkRunner", "--flink_master=flink-jobmanager:8081",
                "--environment_type=EXTERNAL", "--environment_config=localhost:50000",
                "--parallelism=4"]
    assert config.runner.beam_pipeline_args() == expected
    assert build_pipeline(config).beam_pipeline_args == expected


@pytest.mark.parametrize("overrides, problem", [
    (["runner.beam_runner=flink"], "runner 'flink' needs --flink_master"),
    (["runner.beam_runner=dataflow", "runner.beam_args=[--project=p]"],
     "needs --region, --temp_location"),
    (["runner.beam_args=[--runner=DataflowRunner]"], "set the runner with runner.beam_runner"),
    (["runner.beam_runner=dask"], "must be one of")])
def test_a_runner_without_the_options_it_needs_is_a_config_error(overrides, problem):
    with pytest.raises(ConfigError, match=f"runner.beam_.*{problem}"):
        load_config(overrides=overrides)


def test_the_kubeflow_spec_runs_every_beam_component_on_dataflow(tmp_path):
    spec_file = tmp_path / "spec.json"
    assert main(["compile", "--config", "configs/digits.yaml", "--target", "kubeflow",
                 "--output", str(spec_file), "--pipeline_root", "gs://bucket/root",
                 "data.num_images=40", "push.serving_root=gs://bucket/serving",
                 "runner.beam_runner=dataflow",
                 "runner.beam_args=[--project=acme, --region=europe-west4, "
                 "--temp_location=gs://bucket/tmp]"]) == 0
    executors = json.loads(spec_file.read_text())["pipelineSpec"]["deploymentSpec"]["executors"]
    beam_executors = [e for e in executors.values()
                      if "--runner=DataflowRunner" in json.dumps(e)]
    assert len(beam_executors) >= 2  # ImageExampleGen, StatisticsGen, ...
    assert all("--temp_location=gs://bucket/tmp" in json.dumps(e) for e in beam_executors)


def test_the_multiprocessing_direct_runner_gives_the_same_examples(tmp_path):
    from visionpipe.components.image_example_gen.ingest import ingest
    from visionpipe.datasets import shapes

    shapes.write_classification_folder(tmp_path / "images", 20, 24, seed=5, classes=["circle", "square"])
    records = {}
    for runner in ("direct", "direct_multiprocessing"):
        config = load_config(overrides=["task=classification", "data.source=folder",
                                        f"data.path={tmp_path}/images", f"runner.beam_runner={runner}",
                                        "runner.beam_direct_num_workers=2"])
        ingest(config, str(tmp_path / runner))
        by_name = {}  # parsed: a proto map's serialized order may differ between processes
        for path in glob.glob(str(tmp_path / runner / "examples" / "Split-*" / "*.gz")):
            split = path.split("Split-")[1].split("/")[0]
            for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
                example = tf.train.Example.FromString(record.numpy())
                name = example.features.feature["image/filename"].bytes_list.value[0].decode()
                by_name[name] = (split, example)
        records[runner] = by_name
    assert len(records["direct"]) == 20
    assert records["direct"] == records["direct_multiprocessing"]
