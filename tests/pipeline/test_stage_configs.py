"""Each component is given only the config it reads, so TFX's cache key (exec properties +
inputs) of a component changes only when something it reads changes."""
import json

import pytest

from visionpipe.core.config import load_config, stage_config
from visionpipe.pipeline.runners import build_pipeline

BASE = ["data.num_images=40", "data.image_size=16", "model.image_size=16", "optimize.enabled=true"]
UPSTREAM = ["ImageExampleGen", "StatisticsGen", "DataGate"]


def _properties(tmp_path, *overrides):
    config = load_config("configs/digits.yaml", [*BASE, f"runner.output_dir={tmp_path}", *overrides])
    pipeline = build_pipeline(config)
    return {c.id: json.dumps(c.exec_properties, sort_keys=True, default=str)
            for c in pipeline.components}


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    return tmp_path_factory.mktemp("runs")  # one run folder: the generated data's path is in data.*


@pytest.fixture(scope="module")
def base(root):
    return _properties(root)


def _changed(base, root, *overrides):
    other = _properties(root, *overrides)
    return {name for name in base if base[name] != other.get(name)}


def test_changing_optimize_keys_changes_only_the_optimizer(base, root):
    changed = _changed(base, root, "optimize.max_int8_drop=0.2")
    assert changed == {"ModelOptimizer"}


def test_changing_evaluate_keys_reaches_the_evaluator_and_leaves_the_trainer_cached(base, root):
    changed = _changed(base, root, "evaluate.thresholds={accuracy: 0.9}")
    assert "Evaluator" in changed and "ModelOptimizer" in changed
    assert not changed & {"Trainer", *UPSTREAM}


def test_changing_model_keys_leaves_ingestion_cached(base, root):
    changed = _changed(base, root, "model.width=12")
    assert "Trainer" in changed and not changed & set(UPSTREAM)


def test_changing_data_keys_reaches_ingestion(base, root):
    assert "ImageExampleGen" in _changed(base, root, "data.max_bad_fraction=0.2")


def test_the_trainer_keeps_the_gate_metric_and_the_model_name():
    config = load_config("configs/digits.yaml", ["evaluate.gate_metric=top_k_accuracy",
                                                 "push.model_name=served", "evaluate.min_margin_over_trivial=0.3"])
    train = stage_config(config, "train")
    assert train.evaluate.gate_metric == "top_k_accuracy" and train.model_name == "served"
    assert train.evaluate.min_margin_over_trivial == type(config.evaluate)().min_margin_over_trivial
