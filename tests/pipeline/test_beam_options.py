"""runner.beam_runner / runner.beam_args reach every Beam component unchanged; the
multi-processing DirectRunner gives the same Examples as the in-process one."""
import glob
import json

import pytest
import tensorflow as tf

from tests.serving.helpers import free_port
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


def _wait_for_port(port, process, seconds=180):
    import socket
    import time

    end = time.time() + seconds
    while time.time() < end:
        assert process.poll() is None, f"{process.args} exited with {process.returncode}"
        try:
            socket.create_connection(("127.0.0.1", port), 1).close()
            return
        except OSError:
            time.sleep(0.5)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port} after {seconds} s")


@pytest.mark.e2e
def test_the_portable_runner_with_an_external_worker_pool_gives_the_same_examples(images, tmp_path):
    """Beam's job service and an EXTERNAL SDK worker pool on 127.0.0.1: how Python Beam runs
    on Flink/Spark clusters on Kubernetes (the worker-pool sidecar)."""
    import os
    import subprocess
    import sys

    job_port, pool_port = free_port(), free_port()
    # the pool starts its SDK harnesses as `python`: this venv's
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ["PATH"])
    pool_log = open(tmp_path / "pool.log", "w")
    services = [
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.portability.local_job_service_main",
                          "--port", str(job_port)], env=env, stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL),
        subprocess.Popen([sys.executable, "-m", "apache_beam.runners.worker.worker_pool_main",
                          "--service_port", str(pool_port)], env=env, stdout=pool_log,
                         stderr=subprocess.STDOUT)]
    try:
        _wait_for_port(job_port, services[0])
        _wait_for_port(pool_port, services[1])
        portable = _ingest(images, "portable", "portable",
                           f"runner.beam_args=[--job_endpoint=localhost:{job_port}, "
                           f"--environment_type=EXTERNAL, --environment_config=localhost:{pool_port}, "
                           "--sdk_worker_parallelism=2, --direct_num_workers=2]")
    finally:
        for service in services:
            service.terminate()
        for service in services:
            try:
                service.wait(timeout=30)
            except subprocess.TimeoutExpired:
                service.kill()
        pool_log.close()
    assert portable == _ingest(images, "direct_again", "direct")
    # the work ran in the pool's SDK harness processes, not in the job service
    started = (tmp_path / "pool.log").read_text().count("Starting worker")
    assert started >= 1, f"the pool started {started} SDK worker process(es)"
