"""Class-imbalance recipes: the focal loss down-weights easy examples by (1 - p)^gamma,
effective-number class weights as Cui et al. define them, and the config refusing a loss the
task's head does not apply."""
import numpy as np
import pytest
import tensorflow as tf

from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError
from visionpipe.models.training import class_weights
from visionpipe.tasks import get_task


def _loss(task, y_true, y_pred):
    fn = task.loss()
    fn.reduction = tf.keras.losses.Reduction.NONE
    return fn(tf.constant(y_true, tf.float32), tf.constant(y_pred, tf.float32)).numpy()


def _plain_and_focal(task_name, gamma):
    names = ["a", "b", "c"]
    plain = get_task(load_config(overrides=[f"task={task_name}"]), names)
    focal = get_task(load_config(overrides=[f"task={task_name}", "train.loss=focal",
                                            f"train.focal_gamma={gamma}"]), names)
    return plain, focal


@pytest.mark.parametrize("task_name", ["classification", "multilabel"])
def test_focal_loss_scales_each_example_by_one_minus_p_true_to_the_gamma(task_name):
    plain, focal = _plain_and_focal(task_name, 2)
    y_true = [[1, 0, 0], [1, 0, 0]]
    y_pred = [[0.9, 0.05, 0.05],   # easy: p_true 0.9
              [0.3, 0.35, 0.35]]   # hard: p_true 0.3
    ratio = _loss(focal, y_true, y_pred) / _loss(plain, y_true, y_pred)
    if task_name == "classification":
        np.testing.assert_allclose(ratio, [0.1 ** 2, 0.7 ** 2], rtol=1e-4)
    else:  # per label, then averaged: every label's term is scaled by its own (1 - p_t)^2
        assert ratio[0] < 0.05 < ratio[1]
    assert ratio[0] < ratio[1] / 10  # the easy example now weighs far less than the hard one


@pytest.mark.parametrize("task_name", ["classification", "multilabel"])
def test_focal_loss_with_gamma_zero_is_the_cross_entropy(task_name):
    plain, focal = _plain_and_focal(task_name, 0)
    y_true, y_pred = [[0, 1, 0]], [[0.2, 0.5, 0.3]]
    np.testing.assert_allclose(_loss(focal, y_true, y_pred), _loss(plain, y_true, y_pred), rtol=1e-5)


def test_effective_number_weights_follow_cui_et_al_and_average_one_per_example():
    counts = np.array([100, 10, 0, 1])
    beta = 0.9
    weights = class_weights(counts, "effective_number", beta)
    assert sorted(weights) == [0, 1, 3]  # an absent class gets no weight
    raw = {c: (1 - beta) / (1 - beta ** counts[c]) for c in weights}
    scale = counts.sum() / sum(raw[c] * counts[c] for c in raw)
    for c in weights:
        assert weights[c] == pytest.approx(raw[c] * scale)
    assert sum(weights[c] * counts[c] for c in weights) == pytest.approx(counts.sum())
    assert weights[3] > weights[1] > weights[0]
    # beta -> 0: every example counts once, i.e. no re-weighting
    flat = class_weights(counts, "effective_number", 1e-9)
    assert all(w == pytest.approx(1.0) for w in flat.values())
    # beta -> 1: approaches the inverse-frequency weighting
    near = class_weights(counts, "effective_number", 1 - 1e-9)
    balanced = class_weights(counts, "balanced")
    for c in balanced:
        assert near[c] == pytest.approx(balanced[c], rel=1e-3)


def test_a_loss_the_task_head_does_not_apply_is_refused_by_key():
    with pytest.raises(ConfigError, match=r"^train\.loss: task 'detection' does not apply"):
        load_config(overrides=["task=detection", "train.loss=focal"])
    with pytest.raises(ConfigError, match=r"^train\.loss: must be one of"):
        load_config(overrides=["train.loss=hinge"])
    with pytest.raises(ConfigError, match=r"^train\.class_weights: must be one of"):
        load_config(overrides=["train.class_weights=inverse"])
    with pytest.raises(ConfigError, match=r"^train\.class_weight_beta"):
        load_config(overrides=["train.class_weights=effective_number", "train.class_weight_beta=1"])
