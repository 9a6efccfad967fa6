"""Training loop, independent of TFX so tests and benchmarks can call it directly.

Always under tf.distribute.MirroredStrategy (all visible GPUs, else the CPU devices);
mixed precision on GPU; transfer learning in two phases (frozen backbone, then the top N
layers unfrozen at a lower learning rate); class weights or oversampling; label smoothing;
early stopping; BackupAndRestore so an interrupted run resumes; TensorBoard logs. A NaN or
Inf loss, or weights that end up non-finite, stop training with ``TrainingDivergedError``.
"""
from __future__ import annotations

import dataclasses
import logging
import math
import os
import shutil
import time
from typing import Dict, List, Optional, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import backbones, data

log = logging.getLogger("visionpipe.training")
PHASE1_DONE = "phase1_done.weights.h5"


def make_strategy(kind: str = "mirrored") -> tf.distribute.Strategy:
    """``train.strategy``: mirrored (every local GPU, else the CPU), multi_worker
    (MultiWorkerMirroredStrategy over the cluster in TF_CONFIG, each worker running this same
    code), tpu (TPUStrategy on the TPU that TPUClusterResolver finds)."""
    if kind == "multi_worker":
        if not os.environ.get("TF_CONFIG"):
            raise ValueError("train.strategy multi_worker needs TF_CONFIG (the cluster's workers "
                             "and this process's task index), e.g. set by Vertex AI or a "
                             "Kubernetes TFJob")
        return tf.distribute.MultiWorkerMirroredStrategy()
    if kind == "tpu":
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver()
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
        return tf.distribute.TPUStrategy(resolver)
    gpus = tf.config.list_logical_devices("GPU")
    if gpus:
        return tf.distribute.MirroredStrategy()
    cpus = [d.name for d in tf.config.list_logical_devices("CPU")]
    return tf.distribute.MirroredStrategy(devices=cpus)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """Whether this process writes the results (the only one outside multi-worker training)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    task_type, task_id = resolver.task_type, resolver.task_id
    return task_type == "chief" or (task_type == "worker" and task_id == 0
                                    and "chief" not in resolver.cluster_spec().as_dict())


def configure_precision(mode: str) -> str:
    on_gpu = bool(tf.config.list_physical_devices("GPU"))
    policy = "mixed_float16" if mode == "on" or (mode == "auto" and on_gpu) else "float32"
    tf.keras.mixed_precision.set_global_policy(policy)
    return policy


@dataclasses.dataclass
class TrainResult:
    model: tf.keras.Model
    history: Dict[str, List[float]]
    num_train: int
    num_eval: int
    class_counts: List[int]
    replicas: int
    precision: str
    weights_loaded: str
    seconds: float
    resumed_from_epoch: int = 0
    #: epochs trained in each phase, in order ({"phase1": n, "phase2": m}); the report's
    #: curves mark where fine-tuning starts
    phase_epochs: Dict[str, int] = dataclasses.field(default_factory=dict)
    #: this process writes the results (False on a multi-worker run's other workers)
    chief: bool = True

    def summary(self) -> Dict:
        # Not dataclasses.asdict: it deep-copies the Keras model, and keras-cv detectors cannot
        # be rebuilt from their config.
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "model"}


class TrainingDivergedError(RuntimeError):
    """The loss or the weights stopped being finite; the message says where and what to check."""


def _divergence_advice(config) -> str:
    t = config.train
    return (f"Likely causes: a learning rate too high for this model and batch size "
            f"(train.learning_rate={t.learning_rate:g}, train.lr_schedule={t.lr_schedule}, "
            f"train.batch_size={t.batch_size}), float16 overflow (train.mixed_precision="
            f"{t.mixed_precision}), or targets that are not finite (bad labels or boxes; "
            f"train.label_smoothing={t.label_smoothing:g}). Check those keys, e.g. retry with "
            f"train.learning_rate={t.learning_rate / 10:g} train.mixed_precision=off. "
            "No model was exported.")


class _StopOnNonFiniteLoss(tf.keras.callbacks.TerminateOnNaN):
    """Keras' TerminateOnNaN, remembering the epoch and step where the loss went NaN or Inf
    (TerminateOnNaN only stops ``fit``, which then returns as if training had finished)."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase
        self.epoch = 0
        self.where = None

    def on_epoch_begin(self, epoch, logs=None):
        self.epoch = epoch

    def on_batch_end(self, batch, logs=None):
        loss = (logs or {}).get("loss")
        if self.where is None and loss is not None and not np.isfinite(float(loss)):
            self.where = {"epoch": self.epoch + 1, "step": batch + 1, "loss": float(loss)}
        super().on_batch_end(batch, logs)

    def raise_if_diverged(self, config) -> None:
        if self.where is not None:
            w = self.where
            raise TrainingDivergedError(
                f"training stopped: the loss became {w['loss']} at epoch {w['epoch']}, step "
                f"{w['step']} ({self.phase}). {_divergence_advice(config)}")


def non_finite_weights(model: tf.keras.Model) -> List[str]:
    """Names of the model's weights that hold a NaN or an Inf."""
    return [w.name for w in model.weights if not np.all(np.isfinite(w.numpy()))]


def check_finite_weights(model: tf.keras.Model, config) -> None:
    bad = non_finite_weights(model)
    if bad:
        shown = ", ".join(bad[:5]) + (f" and {len(bad) - 5} more" if len(bad) > 5 else "")
        raise TrainingDivergedError(
            f"training finished with {len(bad)} weight(s) that are NaN or Inf ({shown}). "
            f"{_divergence_advice(config)}")


class _EpochLog(tf.keras.callbacks.Callback):
    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase
        self.start = time.time()

    def on_epoch_end(self, epoch, logs=None):
        if logs is not None:  # the same dict reaches History (appended last): the report's LR curve
            rate = _current_learning_rate(self.model.optimizer)
            if rate is not None:
                logs["learning_rate"] = rate
        shown = ", ".join(f"{k}={v:.4f}" for k, v in sorted((logs or {}).items()))
        log.info("%s epoch %d: %s (%.1fs)", self.phase, epoch + 1, shown, time.time() - self.start)


def _current_learning_rate(optimizer):
    rate = getattr(optimizer, "learning_rate", None)
    if isinstance(rate, tf.keras.optimizers.schedules.LearningRateSchedule):
        rate = rate(optimizer.iterations)
    try:
        return float(tf.keras.backend.get_value(rate))
    except (TypeError, ValueError):
        return None


def class_weights(counts: np.ndarray, kind: str = "balanced",
                  beta: float = 0.999) -> Dict[int, float]:
    """Weights of the classes that occur. 'balanced': n / (k * n_c). 'effective_number':
    (1 - beta) / (1 - beta ** n_c) (the "effective number" of a class's examples, Cui et al.
    2019), scaled so that sum_c w_c * n_c = n as the balanced ones are (a mean weight of 1
    per training example, so the learning rate means the same); beta -> 0 gives all 1."""
    counts = np.asarray(counts, np.float64)
    present = counts > 0
    total, k = counts.sum(), present.sum()
    if kind == "balanced":
        return {c: float(total / (k * counts[c])) for c in range(len(counts)) if present[c]}
    if kind != "effective_number":
        raise ValueError(f"unknown class weighting {kind!r}")
    raw = np.where(present, (1.0 - beta) / (1.0 - np.power(beta, np.maximum(counts, 1))), 0.0)
    raw *= total / float(np.sum(raw * counts))
    return {c: float(raw[c]) for c in range(len(counts)) if present[c]}


def learning_rate(tcfg, base: float, epochs: int, steps: int):
    """A float, or a cosine decay over the phase's steps (stable final weights)."""
    if tcfg.lr_schedule == "constant" or epochs <= 0:
        return base
    return tf.keras.optimizers.schedules.CosineDecay(base, decay_steps=epochs * steps, alpha=0.01)


def _fit(model, train_ds, eval_ds, epochs, steps, eval_steps, callbacks, weights, initial_epoch=0):
    return model.fit(train_ds, validation_data=eval_ds, epochs=epochs, initial_epoch=initial_epoch,
                     steps_per_epoch=steps, validation_steps=eval_steps or None,
                     class_weight=weights, callbacks=callbacks, verbose=0)


def _unfreeze_top(backbone: tf.keras.Model, n: int) -> int:
    """Unfreeze the top ``n`` layers with weights; BatchNorm stays frozen (standard practice)."""
    backbone.trainable = True
    weighted = [layer for layer in backbone.layers if layer.weights]
    for layer in weighted[:-n] if n < len(weighted) else []:
        layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            layer.trainable = False
    return sum(1 for layer in weighted if layer.trainable)


def train(config, task, train_files: Sequence[str], eval_files: Sequence[str], log_dir: str,
          backup_dir: Optional[str] = None, strategy: Optional[tf.distribute.Strategy] = None,
          extra_callbacks: Sequence[tf.keras.callbacks.Callback] = (),
          warm_start_from: Optional[str] = None) -> TrainResult:
    """Train ``task``'s model; returns the trained model and what happened.
    ``warm_start_from``: a SavedModel of the same architecture whose weights it starts from."""
    start = time.time()
    tcfg = config.train
    tf.keras.utils.set_random_seed(tcfg.seed)
    precision = configure_precision(tcfg.mixed_precision)
    strategy = strategy or make_strategy(tcfg.strategy)
    replicas = strategy.num_replicas_in_sync

    num_train, num_eval = data.count_examples(train_files), data.count_examples(eval_files)
    if num_train == 0:
        raise ValueError(f"the train split is empty ({list(train_files)[:3]}...)")
    if (tcfg.class_weights != "none" or tcfg.oversample) and not task.single_label:
        raise ValueError("train.class_weights and train.oversample apply to single-label tasks only")
    one_label = task.single_label or task.image_labels == "single"
    counts = data.class_counts(train_files, task.num_classes) if one_label else np.zeros(0)
    task.train_class_counts = counts if one_label else None
    weights = (class_weights(counts, tcfg.class_weights, tcfg.class_weight_beta)
               if tcfg.class_weights != "none" else None)
    oversample_counts = counts if tcfg.oversample else None

    global_batch = tcfg.batch_size * replicas
    steps = tcfg.steps_per_epoch or max(1, math.ceil(num_train / global_batch))
    eval_steps = tcfg.eval_steps or None
    train_ds = data.make_dataset(train_files, task, global_batch, training=True, seed=tcfg.seed,
                                 oversample_counts=oversample_counts)
    eval_ds = data.make_dataset(eval_files, task, global_batch, training=False)

    phase1_lr = learning_rate(tcfg, tcfg.learning_rate, tcfg.epochs, steps)
    with strategy.scope():
        model = task.build_model()
        if warm_start_from:
            task.weights_loaded = backbones.load_model_weights(model, warm_start_from)
        task.compile_model(model, phase1_lr)
    backbone = task.backbone_of(model)
    # a warm start continues the whole model: no frozen-backbone phase
    transfer = bool(task.weights_loaded) and not warm_start_from

    chief = is_chief(strategy)
    # every worker runs the callbacks; only the chief's logs land where the run's are read
    tensorboard_dir = log_dir if chief else os.path.join(log_dir, f"worker-{strategy.cluster_resolver.task_id}")
    callbacks: List[tf.keras.callbacks.Callback] = [tf.keras.callbacks.TensorBoard(log_dir=tensorboard_dir)]
    if tcfg.early_stopping_patience:
        callbacks.append(tf.keras.callbacks.EarlyStopping(
            monitor="val_loss", patience=tcfg.early_stopping_patience, restore_best_weights=True))
    callbacks.extend(extra_callbacks)

    guards: Dict[str, _StopOnNonFiniteLoss] = {}

    def with_backup(phase):
        guards[phase] = _StopOnNonFiniteLoss(phase)
        cbs = list(callbacks) + [guards[phase], _EpochLog(phase)]
        if backup_dir:
            cbs.append(tf.keras.callbacks.BackupAndRestore(os.path.join(backup_dir, phase)))
        return cbs

    def stop_if_diverged(phase):
        try:
            guards[phase].raise_if_diverged(config)
        except TrainingDivergedError:
            if backup_dir:  # its last epoch holds the diverged weights: never resume from it
                shutil.rmtree(backup_dir, ignore_errors=True)
            raise

    history: Dict[str, List[float]] = {}
    phase_epochs: Dict[str, int] = {}
    phase1_marker = os.path.join(backup_dir, PHASE1_DONE) if backup_dir else None
    resumed_from = 0
    if phase1_marker and tf.io.gfile.exists(phase1_marker):
        model.load_weights(phase1_marker)
        log.info("resuming after the first phase from %s", phase1_marker)
    else:
        if transfer:
            backbone.trainable = False
            with strategy.scope():
                task.compile_model(model, phase1_lr)
        result = _fit(model, train_ds, eval_ds, tcfg.epochs, steps, eval_steps,
                      with_backup("phase1"), weights)
        stop_if_diverged("phase1")
        resumed_from = result.epoch[0] if result.epoch else tcfg.epochs
        _extend(history, result.history)
        phase_epochs["phase1"] = len(result.epoch)
        if phase1_marker and transfer and tcfg.fine_tune_epochs:
            model.save_weights(phase1_marker)

    if transfer and tcfg.fine_tune_epochs:
        unfrozen = _unfreeze_top(backbone, tcfg.fine_tune_layers)
        log.info("fine-tuning the top %d backbone layers at lr %.2g", unfrozen,
                 tcfg.learning_rate * tcfg.fine_tune_lr_factor)
        with strategy.scope():
            task.compile_model(model, learning_rate(
                tcfg, tcfg.learning_rate * tcfg.fine_tune_lr_factor, tcfg.fine_tune_epochs, steps))
        result = _fit(model, train_ds, eval_ds, tcfg.epochs + tcfg.fine_tune_epochs, steps,
                      eval_steps, with_backup("phase2"), weights, initial_epoch=tcfg.epochs)
        stop_if_diverged("phase2")
        _extend(history, result.history)
        phase_epochs["phase2"] = len(result.epoch)
    if backup_dir:
        shutil.rmtree(backup_dir, ignore_errors=True)
    check_finite_weights(model, config)

    return TrainResult(model=model, history=history, num_train=num_train, num_eval=num_eval,
                       class_counts=[int(c) for c in counts], replicas=replicas, precision=precision,
                       weights_loaded=task.weights_loaded, seconds=round(time.time() - start, 2),
                       resumed_from_epoch=resumed_from, phase_epochs=phase_epochs, chief=chief)


def _extend(history: Dict[str, List[float]], new: Dict[str, List[float]]) -> None:
    for key, values in new.items():
        history.setdefault(key, []).extend(float(v) for v in values)
