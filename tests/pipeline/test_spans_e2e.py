"""Continuous training on spans: a run ingests the latest span of data.path's {SPAN} pattern
and records it on the Examples; with train.warm_start=latest_blessed the next span's run
starts from the model the first one blessed."""
import pytest

from visionpipe.cli import pipeline_commands as commands
from visionpipe.core.config import load_config
from visionpipe.datasets import shapes

pytestmark = pytest.mark.e2e


def _write_span(root, number):
    shapes.write_classification_folder(root / "incoming" / f"span-{number}", 60, 32, seed=number,
                                       classes=["circle", "square"])


def _config(root):
    return load_config(overrides=[
        "name=spans_e2e", "task=classification", "data.source=folder",
        f"data.path={root}/incoming/span-{{SPAN}}/", "data.split_ratios={train: 0.7, eval: 0.3}",
        "model.image_size=32", "model.width=8", "train.epochs=8", "train.batch_size=16",
        "train.warm_start=latest_blessed", "evaluate.min_margin_over_trivial=0.0",
        "evaluate.max_drops={accuracy: 1.0}", "push.load_check=false",
        f"runner.output_dir={root}/runs", f"push.serving_root={root}/serving"])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("spans")
    _write_span(root, 1)
    first = commands._run(_config(root))[1]
    _write_span(root, 2)
    second = commands._run(_config(root))[1]
    return first, second


def test_each_run_ingests_the_latest_span_and_records_it(runs):
    first, second = runs
    assert first["data"]["span"] == 1 and second["data"]["span"] == 2
    assert sum(second["data"]["splits"].values()) == 60  # span 2 only (data.span_window: 1)
    assert "ImageExampleGen" not in second.get("cached_components", [])


def test_the_next_spans_run_warm_starts_from_the_blessed_model(runs):
    first, second = runs
    assert first["evaluation"]["blessed"] is True
    assert not first["training"].get("weights_loaded")  # no blessed model yet: from scratch
    assert second["training"]["weights_loaded"].startswith("all weights from the latest blessed model")
    assert first["model_uri"] in second["training"]["weights_loaded"]
