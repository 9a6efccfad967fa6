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
    beam_executors = {name: e for name, e in executors.items()
                      if "--runner=DataflowRunner" in json.dumps(e)}
    assert {"ImageExampleGen_executor", "StatisticsGen_executor",
            "Evaluator_executor"} <= set(beam_executors), sorted(executors)
    assert all("--temp_location=gs://bucket/tmp" in json.dumps(e) for e in beam_executors.values())


def _examples_by_name(root):
    by_name = {}  # parsed: a proto map's serialized order may differ between processes
    for path in glob.glob(str(root / "examples" / "Split-*" / "*.gz")):
        split = path.split("Split-")[1].split("/")[0]
        for record in tf.data.TFRecordDataset(path, compression_type="GZIP"):
            example = tf.train.Example.FromString(record.numpy())
            name = example.features.feature["image/filename"].bytes_list.value[0].decode()
            by_name[name] = (split, example)
    return by_name


def _ingest(tmp_path, name, runner, *overrides):
    from visionpipe.components.image_example_gen.ingest import ingest

    config = load_config(overrides=["task=classification", "data.source=folder",
                                    f"data.path={tmp_path}/images", f"runner.beam_runner={runner}",
                                    *overrides])
    ingest(config, str(tmp_path / name))
    return _examples_by_name(tmp_path / name)


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    from visionpipe.datasets import shapes

    root = tmp_path_factory.mktemp("beam")
    shapes.write_classification_folder(root / "images", 20, 24, seed=5, classes=["circle", "square"])
    return root


def test_the_multiprocessing_direct_runner_gives_the_same_examples(images):
    direct = _ingest(images, "direct", "direct")
    assert len(direct) == 20
    assert _ingest(images, "multi", "direct_multiprocessing",
                   "runner.beam_direct_num_workers=2") == direct


@pytest.mark.e2e
def test_the_portable_runner_with_an_external_worker_pool_gives_the_same_examples(images, tmp_path):
    """Beam's job service and an EXTERNAL SDK worker pool on 127.0.0.1: how Python Beam runs
    on Flink/Spark clusters on Kubernetes (the worker-pool sidecar); two SDK harnesses."""
    from visionpipe.pipeline.local_beam_cluster import LocalBeamCluster

    with LocalBeamCluster(workers=2, log_dir=tmp_path / "cluster") as cluster:
        portable = _ingest(images, "portable", "portable",
                           f"runner.beam_args=[{', '.join(cluster.beam_args)}]")
        started = cluster.workers_started()
    assert portable == _ingest(images, "direct_again", "direct")
    # the work ran in the pool's SDK harness processes, not in the job service
    assert started >= 2, f"the pool started {started} SDK harness process(es), not 2"


@pytest.mark.e2e
def test_the_evaluator_scores_with_tfma_on_the_portable_runner_like_on_the_direct_runner(
        images, tmp_path):
    """The Evaluator's Beam scorer (TFMA, classification) runs on the pipeline's runner."""
    from tests.support.toy_model import write_toy_classifier
    from visionpipe.core.examples import split_files
    from visionpipe.pipeline.local_beam_cluster import LocalBeamCluster
    from visionpipe.tasks import get_task

    _ingest(images, "examples_for_eval", "direct")
    eval_files = split_files(str(images / "examples_for_eval" / "examples"), "eval")
    export = write_toy_classifier(tmp_path / "model" / "1", class_names=("circle", "square"),
                                  image_size=24, conv_filters=4)
    config = load_config(overrides=["task=classification", "model.image_size=24"])
    task = get_task(config, ["circle", "square"])
    direct = task.evaluate_exports({"candidate": str(export)}, eval_files, str(tmp_path / "direct"),
                                   beam_pipeline_args=config.runner.beam_pipeline_args())
    with LocalBeamCluster(workers=2, log_dir=tmp_path / "cluster") as cluster:
        portable = task.evaluate_exports(
            {"candidate": str(export)}, eval_files, str(tmp_path / "portable"),
            beam_pipeline_args=["--runner=PortableRunner", *cluster.beam_args])
        started = cluster.workers_started()
    assert started >= 2, f"TFMA ran in {started} SDK harness process(es), not 2"
    assert direct["candidate"]["example_count"] == len(_examples_in(eval_files)) > 0
    assert portable["candidate"].keys() == direct["candidate"].keys()
    for name, value in direct["candidate"].items():
        assert portable["candidate"][name] == pytest.approx(value, abs=1e-6, nan_ok=True), name


def _examples_in(files):
    return [r for f in files for r in tf.data.TFRecordDataset(f, compression_type="GZIP")]
