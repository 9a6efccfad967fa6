"""Version policy, hot reload, and faults on disk: the server keeps serving a good version."""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time

import requests

from tests.serving.conftest import MODEL, push
from tests.serving.helpers import free_port, grpc_predict_version, wait_for


def rest_status(server, version=None):
    path = f"/v1/models/{MODEL}" + (f"/versions/{version}" if version else "")
    response = requests.get(f"http://127.0.0.1:{server.rest_port}{path}", timeout=10)
    return {int(s["version"]): s for s in response.json().get("model_version_status", [])}


def test_newer_version_is_loaded_and_the_older_unloaded(start_server, model_base, toy_versions, png_bytes):
    server = start_server(model_base_path=str(model_base))
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1
    push(model_base, 2, toy_versions[2])
    wait_for(lambda: rest_status(server).get(1, {}).get("state") == "END", what="version 1 unloaded")
    assert rest_status(server)[2]["state"] == "AVAILABLE"
    assert grpc_predict_version(server.grpc_port, png_bytes) == 2


def test_temporary_and_incomplete_folders_are_ignored(start_server, model_base, toy_versions, png_bytes):
    shutil.copytree(toy_versions[2], model_base / ".tmp-7")
    (model_base / "8").mkdir()  # a non-atomic push that has not written saved_model.pb yet
    (model_base / "8" / "variables").mkdir()
    shutil.copytree(toy_versions[2], model_base / "v9")
    server = start_server(model_base_path=str(model_base))
    time.sleep(0.5)  # a few polls
    assert set(rest_status(server)) == {1}
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1


def test_truncated_saved_model_is_reported_and_the_old_version_keeps_serving(
        start_server, model_base, toy_versions, png_bytes):
    server = start_server(model_base_path=str(model_base))
    staging = model_base / ".tmp-2"
    shutil.copytree(toy_versions[2], staging)
    pb = staging / "saved_model.pb"
    pb.write_bytes(pb.read_bytes()[: pb.stat().st_size // 2])
    staging.rename(model_base / "2")
    status = wait_for(lambda: rest_status(server).get(2, {}).get("state") == "END" and rest_status(server)[2],
                      what="version 2 reported")
    assert status["status"]["error_code"] == "UNKNOWN"
    assert "saved_model.pb" in status["status"]["error_message"]
    assert rest_status(server)[1]["state"] == "AVAILABLE"
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1
    # A repaired push of the same version number is loaded.
    shutil.rmtree(model_base / "2")
    time.sleep(0.5)
    push(model_base, 2, toy_versions[2])
    wait_for(lambda: grpc_predict_version(server.grpc_port, png_bytes) == 2, what="repaired version 2")


def test_version_failing_warm_up_is_reported_and_not_served(start_server, model_base, toy_versions, png_bytes):
    from visionpipe.models.export import write_warmup_requests

    server = start_server(model_base_path=str(model_base))
    staging = model_base / ".tmp-2"
    shutil.copytree(toy_versions[2], staging)
    write_warmup_requests(str(staging), [b"not an image"], MODEL)
    staging.rename(model_base / "2")
    status = wait_for(lambda: rest_status(server).get(2, {}).get("state") == "END" and rest_status(server)[2],
                      what="version 2 reported")
    assert "warm-up request 0 failed" in status["status"]["error_message"]
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1


def test_deleted_version_folder_is_unloaded_and_the_previous_version_serves(
        start_server, model_base, toy_versions, png_bytes):
    push(model_base, 2, toy_versions[2])
    server = start_server(model_base_path=str(model_base))
    assert grpc_predict_version(server.grpc_port, png_bytes) == 2
    shutil.rmtree(model_base / "2")
    wait_for(lambda: rest_status(server).get(2, {}).get("state") == "END", what="version 2 unloaded")
    assert rest_status(server)[1]["state"] == "AVAILABLE"
    assert grpc_predict_version(server.grpc_port, png_bytes) == 1


def test_version_policies_select_versions(start_server, model_base, toy_versions, tmp_path, png_bytes):
    push(model_base, 2, toy_versions[2])
    push(model_base, 3, toy_versions[1])
    for policy, expected in (("latest { num_versions: 2 }", {2, 3}), ("specific { versions: 1 }", {1}),
                             ("all {}", {1, 2, 3})):
        config = tmp_path / f"{policy.split()[0]}.config"
        config.write_text(f'model_config_list {{ config {{ name: "{MODEL}" base_path: "{model_base}" '
                          f'model_platform: "tensorflow" model_version_policy {{ {policy} }} }} }}')
        server = start_server(model_config_file=str(config), model_name="")
        states = {v for v, s in rest_status(server).items() if s["state"] == "AVAILABLE"}
        assert states == expected, policy


def _spawn_server(base, grpc_port, rest_port):
    env = dict(os.environ, TF_USE_LEGACY_KERAS="1", TF_CPP_MIN_LOG_LEVEL="3")
    return subprocess.Popen(
        [sys.executable, "-m", "visionpipe.cli", "serve", f"--port={grpc_port}",
         f"--rest_api_port={rest_port}", f"--model_name={MODEL}", f"--model_base_path={base}",
         "--file_system_poll_wait_seconds=0.2"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _serving_version(port, image):
    try:
        return grpc_predict_version(port, image, timeout=2)
    except Exception:  # not up yet
        return None


def test_sigkill_during_a_push_then_restart_serves_the_newest_complete_version(
        model_base, toy_versions, png_bytes):
    push(model_base, 2, toy_versions[2])
    grpc_port, rest_port = free_port(), free_port()
    process = _spawn_server(model_base, grpc_port, rest_port)
    try:
        wait_for(lambda: _serving_version(grpc_port, png_bytes) == 2, timeout=90, interval=0.3,
                 what="server up")
        # A push of version 3 is under way (half copied) when the server is killed.
        staging = model_base / ".tmp-3"
        staging.mkdir()
        shutil.copy(toy_versions[1] / "saved_model.pb", staging / "saved_model.pb")
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
        process = _spawn_server(model_base, grpc_port, rest_port)
        assert wait_for(lambda: _serving_version(grpc_port, png_bytes), timeout=90, interval=0.3,
                        what="server restarted") == 2
        # The push completes after the restart: the new version is picked up.
        shutil.rmtree(staging)
        push(model_base, 3, toy_versions[1])
        wait_for(lambda: _serving_version(grpc_port, png_bytes) == 3, timeout=30, what="version 3")
        process.terminate()  # SIGTERM: a clean shutdown
        assert process.wait(timeout=30) == 0
    finally:
        process.kill()
        process.wait(timeout=30)


def test_edited_model_config_file_is_applied_when_polled(start_server, model_base, toy_versions, tmp_path,
                                                         png_bytes):
    second = tmp_path / "second"
    second.mkdir()
    push(second, 4, toy_versions[2])
    entry = 'config {{ name: "{}" base_path: "{}" model_platform: "tensorflow" }}'
    config = tmp_path / "models.config"
    config.write_text(f"model_config_list {{ {entry.format(MODEL, model_base)} }}")
    server = start_server(model_config_file=str(config), model_name="", model_config_file_poll_wait_seconds=0.2)
    assert server.manager.model_names() == [MODEL]
    config.write_text(f"model_config_list {{ {entry.format(MODEL, model_base)} {entry.format('second', second)} }}")
    wait_for(lambda: server.manager.available_versions("second") == [4], what="second model loaded")
    config.write_text("model_config_list { config { name: ")  # a broken edit keeps the running config
    time.sleep(0.5)
    assert server.manager.model_names() == sorted([MODEL, "second"])
    assert grpc_predict_version(server.grpc_port, png_bytes, model="second") == 4
