"""Multi-label metrics on hand-made predictions (values worked out by hand in the comments)."""
import numpy as np
import pytest

from visionpipe.components.evaluator.gate import judge
from visionpipe.tasks.multilabel.task import multilabel_metrics

# 4 images, labels a and b.
PROBABILITIES = np.array([[0.9, 0.2], [0.8, 0.6], [0.3, 0.7], [0.1, 0.4]])
TRUTH = np.array([[1, 0], [0, 1], [1, 1], [0, 1]])


def test_f1_micro_and_macro_exact_match_at_the_thresholds():
    m = multilabel_metrics(PROBABILITIES, TRUTH, [0.5, 0.5], ["a", "b"])
    # a: predicted [1, 1, 0, 0] vs [1, 0, 1, 0]: tp 1, 2 predicted, 2 true -> F1 0.5
    # b: predicted [0, 1, 1, 0] vs [0, 1, 1, 1]: tp 2, 2 predicted, 3 true -> F1 0.8
    assert m["macro_f1"] == pytest.approx((0.5 + 0.8) / 2)
    # micro: tp 3, 4 predicted, 5 true -> 6 / 9
    assert m["f1"] == m["micro_f1"] == pytest.approx(6 / 9)
    assert m["exact_match"] == pytest.approx(1 / 4)  # only image 0 is right on both labels
    assert m["binary_accuracy"] == pytest.approx(5 / 8)
    assert m["num_examples"] == 4


def test_each_label_is_decided_by_its_own_threshold():
    m = multilabel_metrics(PROBABILITIES, TRUTH, [0.85, 0.35], ["a", "b"])
    # a: [1, 0, 0, 0] vs [1, 0, 1, 0] -> 2/3; b: [0, 1, 1, 1] vs [0, 1, 1, 1] -> 1
    assert m["macro_f1"] == pytest.approx((2 / 3 + 1.0) / 2)
    assert m["exact_match"] == pytest.approx(3 / 4)


def test_auc_and_average_precision_per_label_by_name_and_their_macro_means():
    m = multilabel_metrics(PROBABILITIES, TRUTH, [0.5, 0.5], ["a", "b"])
    # a: positives score 0.9, 0.3; negatives 0.8, 0.1 -> 3 of 4 pairs ordered -> AUC 0.75;
    # ranked P N P N -> AP = (1/1 + 2/3) / 2
    assert m["auc/a"] == pytest.approx(0.75)
    assert m["ap/a"] == pytest.approx((1 + 2 / 3) / 2)
    # b: every positive (0.7, 0.6, 0.4) above the negative (0.2)
    assert m["auc/b"] == pytest.approx(1.0) and m["ap/b"] == pytest.approx(1.0)
    assert m["macro_auc"] == pytest.approx((0.75 + 1.0) / 2)
    assert m["macro_map"] == pytest.approx(((1 + 2 / 3) / 2 + 1.0) / 2)
    assert m["positive_rate/a"] == 0.5 and m["positive_rate/b"] == 0.75


def test_a_constant_score_ranks_nothing_auc_half_and_ap_the_positive_rate():
    m = multilabel_metrics(np.full((4, 2), 0.7), TRUTH, [0.5, 0.5], ["a", "b"])
    assert m["macro_auc"] == pytest.approx(0.5)
    assert m["ap/a"] == pytest.approx(0.5) and m["ap/b"] == pytest.approx(0.75)
    # ... while predicting every label for every image still scores a fair F1
    assert m["f1"] == pytest.approx(2 * 5 / (8 + 5))


def test_reversed_scores_give_auc_zero():
    m = multilabel_metrics(1.0 - PROBABILITIES[:, 1:], TRUTH[:, 1:], [0.5], ["b"])
    assert m["auc/b"] == pytest.approx(0.0) and m["macro_auc"] == pytest.approx(0.0)


def test_undefined_metrics_are_left_out_so_a_gate_on_them_fails_by_name():
    truth = np.array([[1, 0], [1, 0], [1, 0]])  # a in every image, b in none
    m = multilabel_metrics(np.array([[0.9, 0.1], [0.8, 0.2], [0.7, 0.3]]), truth, [0.5, 0.5], ["a", "b"])
    assert "auc/a" not in m and "auc/b" not in m and "macro_auc" not in m
    assert m["ap/a"] == pytest.approx(1.0) and "ap/b" not in m
    assert m["macro_map"] == pytest.approx(1.0)  # the mean over the labels where AP exists
    result = judge(m, gate_metric="macro_auc", thresholds={"macro_auc": 0.9}, max_drops={})
    assert not result.blessed and "macro_auc: not computed" in result.failures[0]


def test_shapes_that_do_not_match_are_refused():
    with pytest.raises(ValueError, match="must both be"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 3)), [0.5, 0.5], ["a", "b"])
    with pytest.raises(ValueError, match="class names"):
        multilabel_metrics(np.zeros((3, 2)), np.zeros((3, 2)), [0.5, 0.5], ["a"])
