"""Knowledge distillation: a small student learns from the frozen teacher's temperature-
softened outputs (KL divergence, scaled by T^2 so its gradients keep their size as T grows)
plus the hard labels, weighted ``alpha * hard + (1 - alpha) * soft`` (Hinton et al., 2015).

Models may end in a softmax: their log-probabilities are logits up to a per-row constant,
which the softmax of the tempered distribution ignores, so both kinds of output work.

"Function matching" (Beyer et al., 2022, "Knowledge distillation: A good teacher is patient
and consistent"): teacher and student always see the identical input (the same augmented
view), and with ``mixup_alpha > 0`` every training batch is additionally blended with a
shuffled copy of itself (MixUp, per-example ratio ~ Beta(alpha, alpha)) before both models
see it. The teacher labels the blends, so the student matches the teacher's function
between the training images too, where hard labels carry no information; the hard loss on a
blend is the blend of the two images' hard losses. The training set and its number of
passes are unchanged: no extra labelled data.
"""
from __future__ import annotations

from typing import Callable, Optional

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf


def outputs_are_probabilities(model: tf.keras.Model, images: np.ndarray) -> bool:
    """True when the model's output rows are non-negative and sum to 1 on ``images``."""
    outputs = np.asarray(model(images, training=False))
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def _as_logits(outputs: tf.Tensor, probabilities: bool) -> tf.Tensor:
    return tf.math.log(tf.clip_by_value(outputs, 1e-7, 1.0)) if probabilities else outputs


def _batch_mean_loss(loss):
    """A Loss object as it is; a plain loss function (per-example values, e.g. the one a
    string names) as the batch mean of its values, optionally weighted per example."""
    if isinstance(loss, tf.keras.losses.Loss):
        return loss

    def mean_loss(y_true, y_pred, sample_weight=None):
        values = loss(y_true, y_pred)
        if sample_weight is not None:
            values = values * tf.cast(sample_weight, values.dtype)
        return tf.reduce_mean(values)

    return mean_loss


class Distiller(tf.keras.Model):
    """Trains ``student`` from ``teacher`` (frozen); call/predict run the student."""

    def __init__(self, teacher: tf.keras.Model, student: tf.keras.Model,
                 teacher_probabilities: bool, student_probabilities: bool, **kwargs):
        super().__init__(**kwargs)
        self.teacher = teacher
        self.student = student
        self.teacher.trainable = False
        self.teacher_probabilities = teacher_probabilities
        self.student_probabilities = student_probabilities
        self.hard_loss_fn = None
        self.alpha = 0.1
        self.temperature = 4.0
        self.mixup_alpha = 0.0
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.hard_loss_tracker = tf.keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = tf.keras.metrics.Mean(name="distillation_loss")

    def compile(self, optimizer, hard_loss, alpha: float = 0.1, temperature: float = 4.0,
                mixup_alpha: float = 0.0, metrics=None, **kwargs):
        """``hard_loss(y_true, student_outputs)``: the task's loss on the student's outputs.
        ``mixup_alpha``: Beta parameter of the MixUp blend of the distillation inputs; 0: off."""
        if not 0.0 <= alpha <= 1.0:
            raise ValueError(f"alpha must be in [0, 1], got {alpha}")
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        if mixup_alpha < 0:
            raise ValueError(f"mixup_alpha must be >= 0, got {mixup_alpha}")
        super().compile(optimizer=optimizer, metrics=metrics, **kwargs)
        self.hard_loss_fn = _batch_mean_loss(tf.keras.losses.get(hard_loss))
        self.alpha = alpha
        self.temperature = temperature
        self.mixup_alpha = float(mixup_alpha)

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_loss_tracker, self.soft_loss_tracker,
                *self.compiled_metrics.metrics] if self.compiled_metrics else [
            self.loss_tracker, self.hard_loss_tracker, self.soft_loss_tracker]

    def distillation_loss(self, teacher_outputs, student_outputs):
        t = self.temperature
        soft_teacher = tf.nn.softmax(_as_logits(teacher_outputs, self.teacher_probabilities) / t)
        soft_student = tf.nn.softmax(_as_logits(student_outputs, self.student_probabilities) / t)
        kl = tf.keras.losses.KLDivergence()(soft_teacher, soft_student)
        return kl * (t ** 2)

    def _mixup(self, images):
        """(blended images, per-example weight of the original, partner indices)."""
        batch = tf.shape(images)[0]
        a = self.mixup_alpha
        x = tf.random.gamma([batch], a)
        lam = x / (x + tf.random.gamma([batch], a))  # ~ Beta(a, a)
        partner = tf.random.shuffle(tf.range(batch))
        weight = tf.reshape(lam, [-1] + [1] * (len(images.shape) - 1))
        mixed = weight * tf.cast(images, tf.float32) + (1.0 - weight) * tf.cast(
            tf.gather(images, partner), tf.float32)
        return mixed, lam, partner

    def _hard_loss(self, targets, student_outputs, lam=None, partner=None):
        if lam is None:
            return self.hard_loss_fn(targets, student_outputs)
        # the blend of both images' losses: works for sparse, one-hot and multi-hot targets
        return (self.hard_loss_fn(targets, student_outputs, sample_weight=lam)
                + self.hard_loss_fn(tf.gather(targets, partner), student_outputs,
                                    sample_weight=1.0 - lam))

    def train_step(self, data):
        images, targets = data[0], data[1]
        lam = partner = None
        if self.mixup_alpha > 0:
            images, lam, partner = self._mixup(images)
        teacher_outputs = self.teacher(images, training=False)
        with tf.GradientTape() as tape:
            student_outputs = self.student(images, training=True)
            hard = self._hard_loss(targets, student_outputs, lam, partner)
            soft = self.distillation_loss(teacher_outputs, student_outputs)
            loss = self.alpha * hard + (1.0 - self.alpha) * soft
        variables = self.student.trainable_variables
        self.optimizer.apply_gradients(zip(tape.gradient(loss, variables), variables))
        if lam is None:  # metrics of a blend against one of its labels would mislead
            self.compiled_metrics.update_state(targets, student_outputs)
        self.loss_tracker.update_state(loss)
        self.hard_loss_tracker.update_state(hard)
        self.soft_loss_tracker.update_state(soft)
        return {m.name: m.result() for m in self.metrics}

    def test_step(self, data):
        images, targets = data[0], data[1]
        student_outputs = self.student(images, training=False)
        hard = self.hard_loss_fn(targets, student_outputs)
        soft = self.distillation_loss(self.teacher(images, training=False), student_outputs)
        self.compiled_metrics.update_state(targets, student_outputs)
        self.loss_tracker.update_state(self.alpha * hard + (1.0 - self.alpha) * soft)
        self.hard_loss_tracker.update_state(hard)
        self.soft_loss_tracker.update_state(soft)
        return {m.name: m.result() for m in self.metrics}

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)


def count_parameters(model: tf.keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))


def distill(teacher: tf.keras.Model, student: tf.keras.Model, train_batches: tf.data.Dataset,
            hard_loss, learning_rate: float, epochs: int, alpha: float = 0.1,
            temperature: float = 4.0, mixup_alpha: float = 0.0,
            augment_batches: Optional[Callable[[tf.data.Dataset], tf.data.Dataset]] = None
            ) -> tf.keras.Model:
    """Train ``student`` from ``teacher`` on batched (input, target) pairs; returns the student.

    ``augment_batches(dataset) -> dataset`` augments the (repeated) training batches before
    both models see them (the same view for both), e.g. the Trainer's augmentation. The
    batches are repeated and iterated once, so a per-batch augmentation seed keeps counting
    across epochs."""
    steps = int(tf.data.experimental.cardinality(train_batches))
    if steps == tf.data.experimental.UNKNOWN_CARDINALITY:  # e.g. batches read from TFRecords
        steps = int(train_batches.reduce(np.int64(0), lambda n, _: n + 1))
    train_batches = train_batches.repeat()
    if augment_batches is not None:
        train_batches = augment_batches(train_batches)
    sample = next(iter(train_batches))[0]
    distiller = Distiller(teacher, student,
                          teacher_probabilities=outputs_are_probabilities(teacher, sample),
                          student_probabilities=outputs_are_probabilities(student, sample))
    if steps > 0:  # cosine decay like the Trainer's, when the epoch length is known
        learning_rate = tf.keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=epochs * steps, alpha=0.01)
    distiller.compile(tf.keras.optimizers.Adam(learning_rate), hard_loss=hard_loss,
                      alpha=alpha, temperature=temperature, mixup_alpha=mixup_alpha)
    distiller.fit(train_batches, epochs=epochs, steps_per_epoch=steps, verbose=0)
    return student
