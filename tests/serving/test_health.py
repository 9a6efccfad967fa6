"""grpc.health.v1.Health follows the loaded models (checked with the real health stub)."""
from __future__ import annotations

import shutil

import grpc
import pytest

from tests.serving.conftest import MODEL, push
from tests.serving.helpers import wait_for


@pytest.fixture
def health_stub():
    from grpc_health.v1 import health_pb2_grpc

    channels = []

    def make(server):
        channel = grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}")
        channels.append(channel)
        return health_pb2_grpc.HealthStub(channel)
    yield make
    for channel in channels:
        channel.close()


def check(stub, service: str = "") -> str:
    from grpc_health.v1 import health_pb2

    response = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=10)
    return health_pb2.HealthCheckResponse.ServingStatus.Name(response.status)


def test_server_and_model_are_serving_and_unknown_services_not_found(start_server, model_base, health_stub):
    from visionpipe.serving.client import health_check

    server = start_server(model_base_path=str(model_base))
    stub = health_stub(server)
    assert check(stub) == "SERVING"
    assert check(stub, MODEL) == "SERVING"
    with pytest.raises(grpc.RpcError) as info:
        check(stub, "nope")
    assert info.value.code() == grpc.StatusCode.NOT_FOUND
    # the bundled client and the CLI make the same call
    assert health_check(f"127.0.0.1:{server.grpc_port}", MODEL) == "SERVING"
    from visionpipe.cli.main import main

    assert main(["serving-health", f"--server=127.0.0.1:{server.grpc_port}"]) == 0
    assert main(["serving-health", f"--server=127.0.0.1:{server.grpc_port}", "--service=nope"]) == 1


def test_model_whose_only_version_is_deleted_goes_not_serving(start_server, model_base, toy_versions,
                                                              health_stub):
    from grpc_health.v1 import health_pb2

    server = start_server(model_base_path=str(model_base))
    stub = health_stub(server)
    watch = stub.Watch(health_pb2.HealthCheckRequest(service=MODEL), timeout=60)
    assert next(watch).status == health_pb2.HealthCheckResponse.SERVING
    shutil.rmtree(model_base / "1")
    assert next(watch).status == health_pb2.HealthCheckResponse.NOT_SERVING  # pushed to watchers
    watch.cancel()
    assert check(stub, MODEL) == "NOT_SERVING"
    assert check(stub) == "NOT_SERVING"
    push(model_base, 2, toy_versions[2])
    wait_for(lambda: check(stub, MODEL) == "SERVING", what="version 2 serving")
    assert check(stub) == "SERVING"


def test_model_whose_every_version_failed_is_not_serving(start_server, model_base, tmp_path,
                                                         toy_versions, health_stub):
    broken = tmp_path / "broken"
    broken.mkdir()
    staging = broken / ".tmp-1"
    shutil.copytree(toy_versions[1], staging)
    (staging / "saved_model.pb").write_bytes(b"not a SavedModel")
    staging.rename(broken / "1")
    config = tmp_path / "models.config"
    entry = 'config {{ name: "{}" base_path: "{}" model_platform: "tensorflow" }}'
    config.write_text(f"model_config_list {{ {entry.format(MODEL, model_base)} "
                      f"{entry.format('broken', broken)} }}")
    server = start_server(model_config_file=str(config), model_name="")
    stub = health_stub(server)
    assert check(stub, MODEL) == "SERVING"
    assert check(stub, "broken") == "NOT_SERVING"
    assert check(stub) == "NOT_SERVING"  # as REST /healthz: every configured model must serve


def test_model_removed_from_the_config_goes_not_serving(start_server, model_base, tmp_path, toy_versions,
                                                        health_stub):
    from tensorflow_serving.apis import model_management_pb2, model_service_pb2_grpc

    second = tmp_path / "second"
    second.mkdir()
    push(second, 3, toy_versions[2])
    server = start_server(model_base_path=str(model_base))
    stub = health_stub(server)
    request = model_management_pb2.ReloadConfigRequest()
    for name, path in ((MODEL, model_base), ("second", second)):
        request.config.model_config_list.config.add(name=name, base_path=str(path),
                                                    model_platform="tensorflow")
    with grpc.insecure_channel(f"127.0.0.1:{server.grpc_port}") as channel:
        model_service = model_service_pb2_grpc.ModelServiceStub(channel)
        assert model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
        assert check(stub, "second") == "SERVING" and check(stub) == "SERVING"
        del request.config.model_config_list.config[1]
        assert model_service.HandleReloadConfigRequest(request, timeout=60).status.error_code == 0
    assert check(stub, "second") == "NOT_SERVING"
    assert check(stub) == "SERVING"  # the remaining model serves
    assert 'available_versions{model_name="second"} 0.0' in server.metrics.render().decode()
