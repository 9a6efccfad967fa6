"""Knowledge distillation: a small student learns from the frozen teacher's temperature-
softened outputs (KL divergence, scaled by T^2 so its gradients keep their size as T grows)
plus the hard labels, weighted ``alpha * hard + (1 - alpha) * soft`` (Hinton et al., 2015).

The tempered distributions are computed from each model's logits. A model that ends in a
softmax (or sigmoid) ``Activation`` layer, as every VisionPipe classifier does, is read
before that layer: recovering logits as ``log(probabilities)`` would not do, because a
confident teacher's wrong-class probabilities underflow (or get clipped) to the same floor
and the ranking among them, the "dark knowledge", is lost. A sigmoid head (multi-label) is
distilled per label, with the binary KL divergence of the tempered Bernoulli outputs.

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

from visionpipe.models.augment import StatelessRNG
from visionpipe.models.data import count_elements


def outputs_are_probabilities(model: tf.keras.Model, images: np.ndarray) -> bool:
    """True when the model's output rows are non-negative and sum to 1 on ``images``."""
    outputs = np.asarray(model(images, training=False))
    return bool(np.all(outputs >= 0) and np.allclose(outputs.sum(axis=-1), 1.0, atol=1e-3))


def _as_logits(outputs: tf.Tensor, probabilities: bool) -> tf.Tensor:
    """Fallback for a model whose softmax is not a separate layer."""
    tiny = float(np.finfo(np.float32).tiny)
    return tf.math.log(tf.clip_by_value(outputs, tiny, 1.0)) if probabilities else outputs


def _activation_name(layer) -> str:
    if not isinstance(layer, tf.keras.layers.Activation):
        return ""
    return getattr(layer.activation, "__name__", "")


class OutputView:
    """A model's logits and outputs from one forward pass.

    When the model ends in a softmax or sigmoid ``Activation`` layer, the logits are that
    layer's input (a view sharing the model's weights); otherwise they are recovered from the
    outputs (log-probabilities, or the outputs themselves when they are not probabilities)."""

    def __init__(self, model: tf.keras.Model, probabilities: bool):
        last = model.layers[-1]
        self.kind = _activation_name(last)
        self.model, self.probabilities = model, probabilities
        self.logits_model = None
        if self.kind in ("softmax", "sigmoid"):
            self.logits_model = tf.keras.Model(model.inputs, last.input, name=f"{model.name}_logits")
            self.activation = last.activation
        else:
            self.kind = "softmax"

    def __call__(self, images, training: bool):
        """(float32 logits, the model's outputs)."""
        if self.logits_model is not None:
            logits = tf.cast(self.logits_model(images, training=training), tf.float32)
            return logits, self.activation(logits)
        outputs = self.model(images, training=training)
        return tf.cast(_as_logits(outputs, self.probabilities), tf.float32), outputs


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
        self.teacher_view = OutputView(teacher, teacher_probabilities)
        self.student_view = OutputView(student, student_probabilities)
        if self.teacher_view.kind != self.student_view.kind:
            raise ValueError(f"teacher ({self.teacher_view.kind}) and student "
                             f"({self.student_view.kind}) heads differ: cannot distil")
        self.hard_loss_fn = None
        self.alpha = 0.1
        self.temperature = 4.0
        self.mixup_alpha = 0.0
        self.mixup_seed = 0
        self._mixup_rng = StatelessRNG()
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.hard_loss_tracker = tf.keras.metrics.Mean(name="hard_loss")
        self.soft_loss_tracker = tf.keras.metrics.Mean(name="distillation_loss")

    def compile(self, optimizer, hard_loss, alpha: float = 0.1, temperature: float = 4.0,
                mixup_alpha: float = 0.0, mixup_seed: int = 0, metrics=None, **kwargs):
        """``hard_loss(y_true, student_outputs)``: the task's loss on the student's outputs.
        ``mixup_alpha``: Beta parameter of the MixUp blend of the distillation inputs; 0: off.
        ``mixup_seed``: with the optimizer step, seeds the stateless MixUp draws."""
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
        self.mixup_seed = int(mixup_seed)

    @property
    def metrics(self):
        return [self.loss_tracker, self.hard_loss_tracker, self.soft_loss_tracker,
                *self.compiled_metrics.metrics] if self.compiled_metrics else [
            self.loss_tracker, self.hard_loss_tracker, self.soft_loss_tracker]

    def distillation_loss(self, teacher_logits, student_logits):
        """KL(teacher || student) of the tempered outputs, times T^2, batch mean."""
        t = self.temperature
        if self.student_view.kind == "sigmoid":  # per label, Bernoulli KL, mean over labels
            p = tf.sigmoid(teacher_logits / t)
            log_q, log_1mq = tf.math.log_sigmoid(student_logits / t), tf.math.log_sigmoid(-student_logits / t)
            log_p, log_1mp = tf.math.log_sigmoid(teacher_logits / t), tf.math.log_sigmoid(-teacher_logits / t)
            kl = tf.reduce_mean(p * (log_p - log_q) + (1.0 - p) * (log_1mp - log_1mq), axis=-1)
        else:
            log_p = tf.nn.log_softmax(teacher_logits / t)
            log_q = tf.nn.log_softmax(student_logits / t)
            kl = tf.reduce_sum(tf.exp(log_p) * (log_p - log_q), axis=-1)
        return tf.reduce_mean(kl) * (t ** 2)

    def _mixup(self, images):
        """(blended images, per-example weight of the original, partner indices).

        Stateless draws seeded by ``mixup_seed`` and the optimizer's step: the same run
        gives the same blends, as the Trainer's augmentation does."""
        batch = tf.shape(images)[0]
        a = self.mixup_alpha
        step_seed = tf.stack([tf.constant(self.mixup_seed, tf.int64),
                              tf.cast(self.optimizer.iterations, tf.int64)])
        with self._mixup_rng.bind(step_seed) as rng:
            lam = rng.beta([batch], a, a)
            partner = rng.permutation(batch)
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
        teacher_logits, _ = self.teacher_view(images, training=False)
        with tf.GradientTape() as tape:
            student_logits, student_outputs = self.student_view(images, training=True)
            hard = self._hard_loss(targets, student_outputs, lam, partner)
            soft = self.distillation_loss(teacher_logits, student_logits)
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
        student_logits, student_outputs = self.student_view(images, training=False)
        hard = self.hard_loss_fn(targets, student_outputs)
        soft = self.distillation_loss(self.teacher_view(images, training=False)[0], student_logits)
        self.compiled_metrics.update_state(targets, student_outputs)
        self.loss_tracker.update_state(self.alpha * hard + (1.0 - self.alpha) * soft)
        self.hard_loss_tracker.update_state(hard)
        self.soft_loss_tracker.update_state(soft)
        return {m.name: m.result() for m in self.metrics}

    def call(self, inputs, training=False):
        return self.student(inputs, training=training)


def _probe_batch(spec: tf.TensorSpec) -> np.ndarray:
    shape = [2 if dim is None else dim for dim in spec.shape.as_list()]
    return np.random.default_rng(0).uniform(0.0, 1.0, shape).astype(spec.dtype.as_numpy_dtype)


def count_parameters(model: tf.keras.Model) -> int:
    return int(sum(np.prod(w.shape) for w in model.weights))


def distill(teacher: tf.keras.Model, student: tf.keras.Model, train_batches: tf.data.Dataset,
            hard_loss, learning_rate: float, epochs: int, alpha: float = 0.1,
            temperature: float = 4.0, mixup_alpha: float = 0.0, mixup_seed: int = 0,
            augment_batches: Optional[Callable[[tf.data.Dataset], tf.data.Dataset]] = None
            ) -> tf.keras.Model:
    """Train ``student`` from ``teacher`` on batched (input, target) pairs; returns the student.

    ``augment_batches(dataset) -> dataset`` augments the (repeated) training batches before
    both models see them (the same view for both), e.g. the Trainer's augmentation. The
    batches are repeated and iterated once, so a per-batch augmentation seed keeps counting
    across epochs."""
    steps = count_elements(train_batches)  # e.g. batches read from TFRecords are counted
    train_batches = train_batches.repeat()
    if augment_batches is not None:
        train_batches = augment_batches(train_batches)
    # a probe input from the element spec, not a batch drawn from the data: iterating the
    # dataset here would advance its shuffle seeds, and fit would see another order than a
    # student trained alone on the same dataset (the benchmark pairs the two runs)
    sample = _probe_batch(train_batches.element_spec[0])
    distiller = Distiller(teacher, student,
                          teacher_probabilities=outputs_are_probabilities(teacher, sample),
                          student_probabilities=outputs_are_probabilities(student, sample))
    if steps > 0:  # cosine decay over the run, like the Trainer's
        learning_rate = tf.keras.optimizers.schedules.CosineDecay(
            learning_rate, decay_steps=epochs * steps, alpha=0.01)
    distiller.compile(tf.keras.optimizers.Adam(learning_rate), hard_loss=hard_loss,
                      alpha=alpha, temperature=temperature, mixup_alpha=mixup_alpha,
                      mixup_seed=mixup_seed)
    distiller.fit(train_batches, epochs=epochs, steps_per_epoch=steps, verbose=0)
    return student
