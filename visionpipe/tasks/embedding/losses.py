"""Metric-learning losses on an in-batch (labels, L2-normalised embeddings) pair, written
here (tensorflow-similarity is not installable): batch-mined triplet (semi-hard, hard),
contrastive on every in-batch pair, multi-similarity, and ArcFace's additive angular margin
softmax (with its own class-centre matrix, ``ArcFaceCentres``).

Each function returns one scalar for the batch; ``MetricLoss`` hands Keras that scalar per
example so that Keras's mean over the batch is the scalar itself.
"""
from __future__ import annotations

import math

import visionpipe  # noqa: F401
import tensorflow as tf

#: multi-similarity's fixed weights (Wang et al. 2019): alpha, beta, lambda
MS_ALPHA, MS_BETA, MS_LAMBDA = 2.0, 50.0, 0.5


def _labels(y_true) -> tf.Tensor:
    return tf.reshape(tf.cast(y_true, tf.int32), [-1])


def pairwise_distances(embeddings: tf.Tensor) -> tf.Tensor:
    """Euclidean distances [B, B] (0 on the diagonal)."""
    e = tf.cast(embeddings, tf.float32)
    squared = tf.reduce_sum(tf.square(e), axis=1)
    d2 = squared[:, None] - 2.0 * tf.matmul(e, e, transpose_b=True) + squared[None, :]
    d2 = tf.maximum(d2, 0.0)
    zero = tf.cast(tf.equal(d2, 0.0), tf.float32)
    # sqrt has an infinite gradient at 0: take it of a value kept away from 0
    d = tf.sqrt(d2 + zero * 1e-16) * (1.0 - zero)
    return tf.linalg.set_diag(d, tf.zeros_like(tf.linalg.diag_part(d)))


def _masks(labels):
    same = tf.equal(labels[:, None], labels[None, :])
    not_self = tf.logical_not(tf.eye(tf.shape(labels)[0], dtype=tf.bool))
    return tf.logical_and(same, not_self), tf.logical_not(same)


def _safe_mean(values, mask):
    mask = tf.cast(mask, tf.float32)
    return tf.reduce_sum(values * mask) / tf.maximum(tf.reduce_sum(mask), 1.0)


def triplet_hard(labels, embeddings, margin: float) -> tf.Tensor:
    """Batch-hard triplet (Hermans et al. 2017): per anchor, its farthest positive and nearest
    negative, ``relu(d_ap - d_an + margin)``, averaged over anchors that have both."""
    labels = _labels(labels)
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    pos_f, neg_f = tf.cast(positive, tf.float32), tf.cast(negative, tf.float32)
    hardest_positive = tf.reduce_max(d * pos_f, axis=1)
    big = tf.reduce_max(d) + 1.0
    hardest_negative = tf.reduce_min(d + big * (1.0 - neg_f), axis=1)
    valid = tf.logical_and(tf.reduce_any(positive, axis=1), tf.reduce_any(negative, axis=1))
    return _safe_mean(tf.nn.relu(hardest_positive - hardest_negative + margin), valid)


def triplet_semihard(labels, embeddings, margin: float) -> tf.Tensor:
    """Semi-hard triplet (FaceNet; TF-Addons' rule): for every positive pair (a, p), the
    nearest negative farther than ``d_ap``; when none is, the farthest negative.
    ``relu(d_ap - d_an + margin)`` averaged over positive pairs whose anchor has a negative."""
    labels = _labels(labels)
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    neg_f = tf.cast(negative, tf.float32)
    d_ap = d[:, :, None]  # [a, p, 1]
    d_an = d[:, None, :]  # [a, 1, n]
    outside = tf.logical_and(negative[:, None, :], d_an > d_ap)  # [a, p, n]
    big = tf.reduce_max(d) + 1.0
    nearest_outside = tf.reduce_min(tf.where(outside, tf.broadcast_to(d_an, tf.shape(outside)),
                                             big), axis=2)
    farthest = tf.reduce_max(d * neg_f - (1.0 - neg_f), axis=1)  # [a]
    has_outside = tf.reduce_any(outside, axis=2)
    chosen = tf.where(has_outside, nearest_outside, farthest[:, None])
    losses = tf.nn.relu(d - chosen + margin)
    valid = tf.logical_and(positive, tf.reduce_any(negative, axis=1)[:, None])
    return _safe_mean(losses, valid)


def contrastive(labels, embeddings, margin: float) -> tf.Tensor:
    """Contrastive (Hadsell et al. 2006) on every in-batch pair i < j: ``d^2`` for a pair of
    one identity, ``relu(margin - d)^2`` otherwise, averaged over the pairs."""
    labels = _labels(labels)
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    per_pair = tf.where(positive, tf.square(d), tf.square(tf.nn.relu(margin - d)))
    upper = tf.linalg.band_part(tf.ones_like(d), 0, -1) - tf.eye(tf.shape(d)[0])
    pairs = tf.logical_and(tf.cast(upper, tf.bool), tf.logical_or(positive, negative))
    return _safe_mean(per_pair, pairs)


def multi_similarity(labels, embeddings, margin: float, alpha: float = MS_ALPHA,
                     beta: float = MS_BETA, base: float = MS_LAMBDA) -> tf.Tensor:
    """Multi-similarity (Wang et al. 2019) on cosine similarities S, with its pair mining:
    a negative counts when ``S_an + margin > min_p S_ap``, a positive when
    ``S_ap - margin < max_n S_an``. Per anchor
    ``1/alpha log(1 + sum_p e^{-alpha (S_ap - base)}) + 1/beta log(1 + sum_n e^{beta (S_an - base)})``,
    averaged over anchors that have a positive and a negative."""
    labels = _labels(labels)
    e = tf.cast(embeddings, tf.float32)
    s = tf.matmul(e, e, transpose_b=True)
    positive, negative = _masks(labels)
    big = 1e4
    min_pos = tf.reduce_min(tf.where(positive, s, big), axis=1, keepdims=True)
    max_neg = tf.reduce_max(tf.where(negative, s, -big), axis=1, keepdims=True)
    kept_neg = tf.logical_and(negative, s + margin > min_pos)
    kept_pos = tf.logical_and(positive, s - margin < max_neg)
    pos_term = tf.reduce_sum(tf.where(kept_pos, tf.exp(-alpha * (s - base)), 0.0), axis=1)
    neg_term = tf.reduce_sum(tf.where(kept_neg, tf.exp(beta * (s - base)), 0.0), axis=1)
    per_anchor = tf.math.log1p(pos_term) / alpha + tf.math.log1p(neg_term) / beta
    valid = tf.logical_and(tf.reduce_any(positive, axis=1), tf.reduce_any(negative, axis=1))
    return _safe_mean(per_anchor, valid)


def arcface(labels, embeddings, centres, margin: float, scale: float) -> tf.Tensor:
    """ArcFace (Deng et al. 2019): softmax cross-entropy over ``scale * cos(theta_c)`` against
    the L2-normalised class centres ``centres`` [C, D], the true class's angle increased by
    ``margin`` (``cos(theta + m)``; past ``pi - m`` the CosFace-style ``cos theta - m sin m``
    keeps the logit monotonic)."""
    labels = _labels(labels)
    e = tf.math.l2_normalize(tf.cast(embeddings, tf.float32), axis=1)
    w = tf.math.l2_normalize(tf.cast(centres, tf.float32), axis=1)
    cos = tf.clip_by_value(tf.matmul(e, w, transpose_b=True), -1.0, 1.0)
    sin = tf.sqrt(tf.maximum(1.0 - tf.square(cos), 1e-9))  # finite gradient at theta = 0
    with_margin = cos * math.cos(margin) - sin * math.sin(margin)
    with_margin = tf.where(cos > math.cos(math.pi - margin), with_margin,
                           cos - math.sin(math.pi - margin) * margin)
    one_hot = tf.one_hot(labels, tf.shape(w)[0], dtype=tf.float32)
    logits = scale * tf.where(one_hot > 0, with_margin, cos)
    return tf.reduce_mean(tf.nn.softmax_cross_entropy_with_logits(one_hot, logits))


@tf.keras.utils.register_keras_serializable(package="visionpipe")
class ArcFaceCentres(tf.keras.layers.Layer):
    """Passes the embedding through unchanged and holds ArcFace's class centres [C, D] (so they
    are model variables the optimizer trains; the exported signatures never read them)."""

    def __init__(self, num_classes: int, **kwargs):
        super().__init__(**kwargs)
        self.num_classes = int(num_classes)

    def build(self, input_shape):
        self.centres = self.add_weight(name="centres", shape=(self.num_classes, int(input_shape[-1])),
                                       initializer="glorot_uniform", trainable=True)

    def call(self, inputs):
        return inputs

    def get_config(self):
        return {**super().get_config(), "num_classes": self.num_classes}


class MetricLoss(tf.keras.losses.Loss):
    """A Keras loss: y_true the identity (class id) [B], y_pred the embedding [B, D]."""

    def __init__(self, kind: str, margin: float, scale: float = 16.0, centres=None,
                 name: str = "metric_loss"):
        super().__init__(name=name)
        if kind == "arcface" and centres is None:
            raise ValueError("the arcface loss needs the model's ArcFaceCentres layer")
        self.kind, self.margin, self.scale, self.centres = kind, float(margin), float(scale), centres

    def batch_loss(self, y_true, y_pred):
        if self.kind == "arcface":
            return arcface(y_true, y_pred, self.centres.centres, self.margin, self.scale)
        return {"triplet_semihard": triplet_semihard, "triplet_hard": triplet_hard,
                "contrastive": contrastive, "multi_similarity": multi_similarity,
                }[self.kind](y_true, y_pred, self.margin)

    def call(self, y_true, y_pred):
        loss = self.batch_loss(y_true, y_pred)
        return tf.fill([tf.shape(y_pred)[0]], loss)
