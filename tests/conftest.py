"""Shared fixtures. TF_USE_LEGACY_KERAS must be set before anything imports TensorFlow."""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

import visionpipe  # noqa: E402,F401

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO_ROOT.parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"shared datasets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def pytest_sessionfinish(session, exitstatus):
    # pytest exits 5 when it collected no tests; CI must not read that as a pass.
    if exitstatus == 5:
        session.exitstatus = 1
