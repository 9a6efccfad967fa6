"""Fixtures: toy models following the export contract, and servers on free 127.0.0.1 ports."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from visionpipe.serving.options import ServerOptions

MODEL = "toy"


@pytest.fixture(scope="session")
def toy_versions(tmp_path_factory) -> dict:
    """Two exported versions with different weights: {1: path, 2: path}."""
    from tests.support.toy_model import write_toy_classifier

    root = tmp_path_factory.mktemp("toy_exports")
    return {version: write_toy_classifier(root / str(version), seed=version, model_name=MODEL)
            for version in (1, 2)}


def push(base: Path, version: int, source: Path) -> Path:
    """Push as the pipeline's pusher does: copy to a temporary folder, then rename into place."""
    tmp = base / f".tmp-{version}"
    shutil.copytree(source, tmp)
    return tmp.rename(base / str(version))


@pytest.fixture
def model_base(tmp_path, toy_versions) -> Path:
    """A base path holding version 1 only."""
    base = tmp_path / MODEL
    base.mkdir()
    push(base, 1, toy_versions[1])
    return base


@pytest.fixture
def start_server():
    """start_server(**options) -> a started ModelServer; all are stopped at teardown."""
    from visionpipe.serving.server import ModelServer

    servers = []

    def start(**overrides):
        options = ServerOptions(port=0, rest_api_port=0, model_name=MODEL,
                                file_system_poll_wait_seconds=0.2)
        for key, value in overrides.items():
            setattr(options, key, value)
        server = ModelServer(options).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture(scope="session")
def png_bytes() -> bytes:
    from tests.support.toy_model import sample_image

    return sample_image(32, seed=3)
