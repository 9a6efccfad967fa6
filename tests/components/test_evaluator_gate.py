"""The one gate: thresholds, change vs the latest blessed model, the trivial floor, NaN rule."""
import math

from visionpipe.components.evaluator.gate import format_table, judge


def _judge(candidate, baseline=None, thresholds=None, max_drops=None, trivial=None, margin=0.0,
           gate_metric="f1"):
    return judge(candidate, gate_metric=gate_metric, thresholds=thresholds or {},
                 max_drops=max_drops or {}, trivial=trivial, min_margin_over_trivial=margin,
                 baseline=baseline)


def test_gate_blocks_on_absolute_threshold_and_on_drop_vs_baseline():
    result = _judge({"f1": 0.8}, {"f1": 0.9}, {"f1": 0.5}, {"f1": 0.05})
    assert not result.blessed and "dropped more than 0.05" in result.failures[0]
    result = _judge({"f1": 0.4}, None, {"f1": 0.5}, {"f1": 0.05})
    assert not result.blessed and "below the threshold 0.5" in result.failures[0]
    result = _judge({"f1": 0.88}, {"f1": 0.9}, {"f1": 0.5}, {"f1": 0.05})
    assert result.blessed and result.failures == []
    result = _judge({"f1": 0.9}, None, {"accuracy": 0.5}, {})
    assert not result.blessed and "accuracy: not computed" in result.failures[0]


def test_a_model_that_does_not_beat_the_trivial_predictor_by_the_margin_is_refused():
    trivial = {"f1": 0.52}
    assert not _judge({"f1": 0.55}, trivial=trivial, margin=0.05, thresholds={"f1": 0.5}).blessed
    refused = _judge({"f1": 0.525}, trivial=trivial, margin=0.05)
    assert "does not beat the trivial predictor's 0.5200" in refused.failures[0]
    assert _judge({"f1": 0.58}, trivial=trivial, margin=0.05).blessed


def test_nan_or_missing_model_metric_fails_and_a_nan_baseline_skips_the_change_check():
    result = _judge({"f1": math.nan}, thresholds={}, max_drops={"f1": 0.1})
    assert not result.blessed and "f1: NaN" in result.failures[0]
    assert not _judge({}, gate_metric="map_50").blessed
    result = _judge({"f1": 0.7}, baseline={"f1": math.nan}, max_drops={"f1": 0.01})
    assert result.blessed and "change not checked" in result.notes[0]


def test_the_gate_table_shows_model_trivial_baseline_and_threshold_in_one_row():
    result = _judge({"f1": 0.8}, baseline={"f1": 0.79}, thresholds={"f1": 0.5},
                    max_drops={"f1": 0.05}, trivial={"f1": 0.52}, margin=0.05)
    header, row = format_table(result.rows)
    assert header.split() == ["metric", "model", "trivial", "baseline", "threshold", "max", "drop"]
    assert row.split() == ["f1", "0.8000", "0.5200", "0.7900", "0.5000", "0.0500"]
