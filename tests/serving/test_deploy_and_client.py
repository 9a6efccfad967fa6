"""serving-config files parse with TF Serving's protos and match deploy/; the client retries."""
from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest
import yaml
from google.protobuf import text_format

from tests.serving.conftest import MODEL, push
from tests.serving.helpers import free_port
from visionpipe.cli.main import main as serving_main

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
GENERATED = ("models.config", "batching.config", "monitoring.config")


def generate(tmp_path, *extra) -> Path:
    out = tmp_path / "config"
    assert serving_main(["serving-config", "--serving_root", str(tmp_path / "root"), "--output_dir", str(out),
                         *extra]) == 0
    return out


def test_generated_files_parse_with_tf_serving_protos(tmp_path):
    from tensorflow_serving.config import model_server_config_pb2

    from visionpipe.serving.model_config import BatchingParameters, MonitoringConfig

    for name in ("flowers", "digits", ".tmp-ignored"):
        (tmp_path / "root" / name).mkdir(parents=True)
    (tmp_path / "root" / "flowers" / "3").mkdir()  # the labelled version
    out = generate(tmp_path, "--num_versions", "2", "--label", "flowers:stable=3", "--max_batch_size", "16")
    config = text_format.Parse((out / "models.config").read_text(), model_server_config_pb2.ModelServerConfig())
    models = {m.name: m for m in config.model_config_list.config}
    assert set(models) == {"flowers", "digits"}
    assert models["flowers"].base_path == "/models/flowers"
    assert models["flowers"].model_version_policy.latest.num_versions == 2
    assert dict(models["flowers"].version_labels) == {"stable": 3}
    batching = text_format.Parse((out / "batching.config").read_text(), BatchingParameters())
    assert batching.max_batch_size.value == 16 and batching.num_batch_threads.value == 4
    monitoring = text_format.Parse((out / "monitoring.config").read_text(), MonitoringConfig())
    assert monitoring.prometheus_config.enable
    assert monitoring.prometheus_config.path == "/monitoring/prometheus/metrics"


def test_declared_batching_message_matches_tf_serving_field_numbers():
    from visionpipe.serving.model_config import BatchingParameters

    numbers = {f.name: f.number for f in BatchingParameters.DESCRIPTOR.fields}
    assert numbers == {"max_batch_size": 1, "batch_timeout_micros": 2, "max_enqueued_batches": 3,
                       "num_batch_threads": 4, "thread_pool_name": 5, "allowed_batch_sizes": 6,
                       "pad_variable_length_inputs": 7}


def test_bad_label_and_empty_root_are_one_line_errors(tmp_path, capsys):
    (tmp_path / "root").mkdir()
    assert serving_main(["serving-config", "--serving_root", str(tmp_path / "root")]) == 2
    assert "no model folders" in capsys.readouterr().err
    assert serving_main(["serving-config", "--serving_root", str(tmp_path / "root"), "--model_name", "m",
                         "--label", "nonsense"]) == 2
    assert "MODEL:LABEL=VERSION" in capsys.readouterr().err


def test_model_or_labelled_version_missing_from_the_root_is_a_one_line_error(tmp_path, capsys):
    (tmp_path / "root" / "flowers" / "1").mkdir(parents=True)
    config = ["serving-config", "--serving_root", str(tmp_path / "root"),
              "--output_dir", str(tmp_path / "out")]
    assert serving_main([*config, "--model_name", "tulips"]) == 2
    assert "--model_name tulips: no model folder" in capsys.readouterr().err
    assert serving_main([*config, "--label", "flowers:stable=2"]) == 2
    assert "--label flowers:stable=2: no version folder" in capsys.readouterr().err
    assert serving_main([*config, "--model_name", "flowers", "--label", "roses:stable=1"]) == 2
    assert "model 'roses' is not among the models written" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("manifest", ["docker-compose.yml", "kubernetes.yaml"])
def test_deploy_manifests_run_tf_serving_on_the_generated_files(manifest):
    documents = list(yaml.safe_load_all((DEPLOY / manifest).read_text()))
    if manifest == "docker-compose.yml":
        service = documents[0]["services"]["tf-serving"]
        image, args = service["image"], service["command"]
        mounts = {v.split(":")[1] for v in service["volumes"]}
    else:
        deployment = next(d for d in documents if d["kind"] == "Deployment")
        container = deployment["spec"]["template"]["spec"]["containers"][0]
        image, args = container["image"], container["args"]
        mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert image.startswith("tensorflow/serving:")
    flags = dict(arg.lstrip("-").split("=", 1) for arg in args)
    assert {flags["model_config_file"], flags["batching_parameters_file"], flags["monitoring_config_file"]} \
        == {f"/config/{name}" for name in GENERATED}
    assert flags["enable_batching"] == "true"
    # the generated base paths are /models/<name>; the hardened pod adds a writable /tmp
    assert mounts - {"/tmp"} == {"/models", "/config"}


def test_our_server_serves_from_generated_host_config(tmp_path, toy_versions, start_server, png_bytes):
    from visionpipe.serving.client import predict_images

    push_root = tmp_path / "root" / MODEL
    push_root.mkdir(parents=True)
    push(push_root, 1, toy_versions[1])
    out = generate(tmp_path, "--models_dir", "")
    server = start_server(model_config_file=str(out / "models.config"), model_name="", enable_batching=True,
                          batching_parameters_file=str(out / "batching.config"),
                          monitoring_config_file=str(out / "monitoring.config"))
    image = tmp_path / "a.png"
    image.write_bytes(png_bytes)
    rest_rows = predict_images(f"127.0.0.1:{server.rest_port}", MODEL, [image, image])
    grpc_rows = predict_images(f"127.0.0.1:{server.grpc_port}", MODEL, [image], protocol="grpc")
    assert len(rest_rows) == 2 and rest_rows[0]["path"] == str(image)
    assert rest_rows[0]["top_k_names"] == grpc_rows[0]["top_k_names"]
    assert grpc_rows[0]["model_version"] == 1
    assert abs(sum(grpc_rows[0]["probabilities"]) - 1) < 1e-5


def test_client_retries_until_a_starting_server_answers(tmp_path, model_base, png_bytes):
    from visionpipe.serving.client import predict_images
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes)
    port = free_port()
    server = ModelServer(ServerOptions(port=port, rest_api_port=0, model_name=MODEL,
                                       model_base_path=str(model_base), file_system_poll_wait_seconds=0))
    starter = threading.Timer(0.5, server.start)
    starter.start()
    try:
        rows = predict_images(f"127.0.0.1:{port}", MODEL, [image], protocol="grpc", deadline_s=30, retries=20)
        assert rows[0]["model_version"] == 1
    finally:
        starter.join()
        server.stop()


def test_client_does_not_retry_a_permanent_error_and_honours_the_deadline(tmp_path, model_base, start_server,
                                                                          png_bytes):
    from visionpipe.serving.client import ServingClientError, predict_images

    image = tmp_path / "a.png"
    image.write_bytes(png_bytes)
    server = start_server(model_base_path=str(model_base))
    began = time.monotonic()
    with pytest.raises(ServingClientError) as info:
        predict_images(f"127.0.0.1:{server.rest_port}", "missing", [image], retries=5)
    assert info.value.code == "HTTP 404" and time.monotonic() - began < 2
    with pytest.raises(ServingClientError) as info:
        predict_images(f"127.0.0.1:{free_port()}", MODEL, [image], protocol="grpc", deadline_s=1, retries=100)
    assert info.value.code in ("UNAVAILABLE", "DEADLINE_EXCEEDED")
    assert time.monotonic() - began < 6
