"""Segmentation losses on probabilities ``[B, h, w, C]`` and id masks ``[B, h, w(, 1)]``.

Pixels whose id is ``ignore_index`` contribute nothing: they are left out of every sum and of
every normaliser. Cross-entropy and focal are means over the valid pixels, weighted by
``class_weights[true class]`` (normalised by the summed weights, as a weighted mean) and, with
``boundary_weight``, by ``1 + boundary_weight`` on pixels within ``boundary_radius`` px of a
different id in the mask (``boundary_band``); Dice is
``1 - mean_c soft Dice_c`` over the classes, computed on the valid pixels of the batch.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import visionpipe  # noqa: F401
import tensorflow as tf

EPSILON = 1e-7
DICE_SMOOTH = 1.0


def _prepare(y_true, y_pred, num_classes: int, ignore_index: int):
    y_true = tf.cast(y_true, tf.int32)
    if y_true.shape.rank == 4:
        y_true = y_true[..., 0]
    y_pred = tf.cast(y_pred, tf.float32)
    valid = tf.not_equal(y_true, ignore_index)
    labels = tf.where(valid, y_true, tf.zeros_like(y_true))
    one_hot = tf.one_hot(labels, num_classes, dtype=tf.float32)
    return one_hot, tf.clip_by_value(y_pred, EPSILON, 1.0 - EPSILON), tf.cast(valid, tf.float32), labels


def boundary_band(y_true, radius: int = 1) -> tf.Tensor:
    """float32 ``[B, h, w]``: 1 where the ``(2 radius + 1)``-square around a pixel of the id
    mask holds another id (an ignored pixel counts as another id), else 0."""
    ids = tf.cast(y_true, tf.float32)
    if ids.shape.rank == 3:
        ids = ids[..., None]
    window = 2 * radius + 1
    high = tf.nn.max_pool2d(ids, window, 1, "SAME")
    low = -tf.nn.max_pool2d(-ids, window, 1, "SAME")
    return tf.cast(tf.not_equal(high, low), tf.float32)[..., 0]


def _pixel_weights(labels, valid, class_weights: Optional[Sequence[float]], y_true=None,
                   boundary_weight: float = 0.0, boundary_radius: int = 1):
    weights = valid
    if class_weights:
        weights = tf.gather(tf.constant(list(class_weights), tf.float32), labels) * valid
    if boundary_weight:
        weights = weights * (1.0 + boundary_weight * boundary_band(y_true, boundary_radius))
    return weights


def cross_entropy(y_true, y_pred, num_classes: int, ignore_index: int = 255,
                  class_weights: Optional[Sequence[float]] = None, boundary_weight: float = 0.0,
                  boundary_radius: int = 1):
    one_hot, probs, valid, labels = _prepare(y_true, y_pred, num_classes, ignore_index)
    weights = _pixel_weights(labels, valid, class_weights, y_true, boundary_weight, boundary_radius)
    per_pixel = -tf.reduce_sum(one_hot * tf.math.log(probs), axis=-1)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), tf.reduce_sum(weights))


def focal(y_true, y_pred, num_classes: int, ignore_index: int = 255,
          class_weights: Optional[Sequence[float]] = None, gamma: float = 2.0,
          boundary_weight: float = 0.0, boundary_radius: int = 1):
    one_hot, probs, valid, labels = _prepare(y_true, y_pred, num_classes, ignore_index)
    weights = _pixel_weights(labels, valid, class_weights, y_true, boundary_weight, boundary_radius)
    p_true = tf.reduce_sum(one_hot * probs, axis=-1)
    per_pixel = -tf.pow(1.0 - p_true, gamma) * tf.math.log(p_true)
    return tf.math.divide_no_nan(tf.reduce_sum(per_pixel * weights), tf.reduce_sum(weights))


def dice(y_true, y_pred, num_classes: int, ignore_index: int = 255):
    one_hot, probs, valid, _ = _prepare(y_true, y_pred, num_classes, ignore_index)
    valid = valid[..., None]
    axes = [0, 1, 2]
    intersection = tf.reduce_sum(one_hot * probs * valid, axis=axes)
    total = tf.reduce_sum(one_hot * valid, axis=axes) + tf.reduce_sum(probs * valid, axis=axes)
    per_class = (2.0 * intersection + DICE_SMOOTH) / (total + DICE_SMOOTH)
    return 1.0 - tf.reduce_mean(per_class)


def make_loss(seg_config, num_classes: int) -> Callable:
    """The loss ``segmentation.loss`` names, as a Keras loss function of (y_true, y_pred)."""
    ignore, weights = seg_config.ignore_index, list(seg_config.class_weights) or None
    kind = seg_config.loss
    band = {"boundary_weight": seg_config.boundary_weight, "boundary_radius": seg_config.boundary_radius}

    def loss(y_true, y_pred):
        if kind == "cross_entropy":
            return cross_entropy(y_true, y_pred, num_classes, ignore, weights, **band)
        if kind == "focal":
            return focal(y_true, y_pred, num_classes, ignore, weights, seg_config.focal_gamma, **band)
        if kind == "dice":
            return dice(y_true, y_pred, num_classes, ignore)
        return (cross_entropy(y_true, y_pred, num_classes, ignore, weights, **band)
                + seg_config.dice_weight * dice(y_true, y_pred, num_classes, ignore))

    loss.__name__ = f"segmentation_{kind.replace('+', '_')}"
    return loss
