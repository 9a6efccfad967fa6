"""Multi-label classification: several labels per image, sigmoid outputs, binary
cross-entropy and one decision threshold per label, calibrated for F1 on held-out data."""
from __future__ import annotations

from typing import Dict

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.registry import register_task
from visionpipe.tasks.base import Task
from visionpipe.tasks.classification.task import ClassificationTask


@register_task
class MultiLabelTask(ClassificationTask):
    """Several labels per image: sigmoid outputs, binary cross-entropy, a threshold per label."""

    name = "multilabel"
    image_labels = "multi"
    default_gate_metric = "f1"
    activation = "sigmoid"
    single_label = False
    generated_sources = ("shapes",)
    finalizes = True

    @classmethod
    def metric_names(cls, config):
        return ("f1", "micro_f1", "macro_f1", "exact_match", "binary_accuracy", "macro_auc",
                "macro_map", "ap/", "auc/", "positive_rate/")

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        self.thresholds = np.full([self.num_classes], config.model.multilabel_threshold, np.float32)

    def target(self, label_ids):
        # A sum, not a max: the max of no rows is -inf, and an image without labels (a
        # negative, data.allow_unlabeled) must be all zeros. Repeated ids still give 1.
        return tf.minimum(tf.reduce_sum(tf.one_hot(label_ids, self.num_classes), axis=0), 1.0)

    def loss(self):
        t = self.config.train
        if t.loss == "focal":
            return tf.keras.losses.BinaryFocalCrossentropy(
                gamma=t.focal_gamma, label_smoothing=t.label_smoothing)
        return tf.keras.losses.BinaryCrossentropy(label_smoothing=t.label_smoothing)

    def metrics(self):
        threshold = self.config.model.multilabel_threshold
        return [tf.keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=threshold),
                tf.keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_classes),
                tf.keras.metrics.Precision(name="precision", thresholds=threshold),
                tf.keras.metrics.Recall(name="recall", thresholds=threshold)]

    def finalize(self, model, held_out):
        """Per-label decision thresholds from held-out predictions (see calibrate_thresholds)."""
        probabilities = model.predict(held_out.map(lambda x, y: x), verbose=0)
        targets = tf.concat([y for _, y in held_out], axis=0).numpy()
        self.calibrate_thresholds(probabilities, targets)

    def calibrate_thresholds(self, probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per label, the threshold that maximises F1 on held-out predictions."""
        candidates = np.linspace(0.05, 0.95, 19)
        for c in range(self.num_classes):
            f1s = [_f1(probabilities[:, c] >= t, targets[:, c] > 0.5) for t in candidates]
            if max(f1s) > 0:
                self.thresholds[c] = candidates[int(np.argmax(f1s))]
        return self.thresholds

    def serving_outputs(self, model, images):
        outputs = super().serving_outputs(model, images)
        outputs["labels"] = tf.cast(outputs["probabilities"] >= tf.constant(self.thresholds), tf.int32)
        outputs["thresholds"] = tf.tile(tf.constant(self.thresholds)[tf.newaxis],
                                        [tf.shape(images)[0], 1])
        return outputs

    def metrics_from_predictions(self, probabilities, targets):
        """Decision metrics at the served thresholds plus ranking metrics of the scores.

        ``f1`` is micro F1 (every image-label decision counts once; ``micro_f1`` is the same
        number), ``macro_f1`` the mean of the per-label F1s. ``macro_auc`` / ``macro_map`` are
        the means of scikit-learn's ``roc_auc_score`` / ``average_precision_score`` over the
        labels where they are defined (AUC: the label is present in some images and absent in
        others; AP: present somewhere); ``auc/<label>``, ``ap/<label>`` and
        ``positive_rate/<label>`` (AP's chance level) are reported by label name, and a label
        whose metric is undefined on this data has no key (so a gate on it fails by name)."""
        return multilabel_metrics(probabilities, targets, self.thresholds, self.class_names)

    # --- robustness -------------------------------------------------------------------
    def robustness_model(self, export_dir):
        """The Keras model, with the served per-label thresholds restored (calibrated by
        ``finalize``, kept in the signatures' ``thresholds`` output) for the F1 it scores."""
        serve = self.load_export(export_dir).signatures["serving_tensor"]
        pixels = tf.zeros([1, *self.image_size, 3], tf.float32)
        self.thresholds = serve(pixels=pixels)["thresholds"].numpy()[0].astype(np.float32)
        return super().robustness_model(export_dir)

    def robustness_score(self, outputs, targets) -> float:
        metrics = self.metrics_from_predictions(np.asarray(outputs), np.asarray(targets))
        return float(metrics.get(self.gate_metric, metrics["f1"]))

    # --- evaluation ---------------------------------------------------------------------
    def evaluate_exports(self, export_dirs, eval_files, work_dir, beam_pipeline_args=()):
        # TFMA's metrics expect one label id per example: multi-label scores its own outputs.
        return Task.evaluate_exports(self, export_dirs, eval_files, work_dir, beam_pipeline_args)

    # single-label confusion matrices and one-vs-rest curves do not describe label sets
    evaluation_details = Task.evaluation_details
    report_panels = Task.report_panels

    def target_of(self, parsed):
        target = np.zeros(self.num_classes, np.float32)
        target[np.asarray(parsed[features.LABEL]).reshape(-1)] = 1.0
        return target

    def score(self, predictions, targets):
        # scored with the decision rule the model serves (its calibrated thresholds)
        self.thresholds = np.asarray(predictions["thresholds"][0], np.float32)
        return self.metrics_from_predictions(predictions["probabilities"], np.stack(targets))

    def trivial_metrics(self, eval_files, train_files):
        """Label priors from the training split, the same for every image. Cutting constant
        scores at any threshold predicts a fixed label set, so the floor is the best such set:
        the labels whose prior is at least t, for each t (the lowest: every label)."""
        prior = np.stack(self.targets(train_files)).mean(axis=0)
        truth = np.stack(self.targets(eval_files))
        probabilities = np.tile(prior, (len(truth), 1))
        saved, best = self.thresholds, None
        try:
            for cut in sorted(set(prior.tolist())):
                self.thresholds = np.full(self.num_classes, cut, np.float32)
                metrics = self.metrics_from_predictions(probabilities, truth)
                if best is None or metrics[self.gate_metric] > best[self.gate_metric]:
                    best = metrics
        finally:
            self.thresholds = saved
        return best

    @classmethod
    def write_generated(cls, source, data, out_dir):
        from visionpipe.datasets import shapes

        return shapes.write_multilabel_csv(out_dir, data.num_images, data.image_size, data.seed,
                                           data.class_names or None,
                                           separator=data.csv_label_separator), "csv"


def multilabel_metrics(probabilities, targets, thresholds, class_names) -> Dict[str, float]:
    """See ``MultiLabelTask.metrics_from_predictions``."""
    from sklearn.metrics import average_precision_score, roc_auc_score

    probabilities = np.asarray(probabilities, np.float64)
    truth = np.asarray(targets) > 0.5
    if probabilities.shape != truth.shape or probabilities.ndim != 2:
        raise ValueError(f"probabilities {probabilities.shape} and targets {truth.shape} must "
                         "both be [examples, labels]")
    if len(class_names) != truth.shape[1]:
        raise ValueError(f"{len(class_names)} class names for {truth.shape[1]} labels")
    predicted = probabilities >= np.asarray(thresholds)
    metrics = {"f1": _f1(predicted.ravel(), truth.ravel())}
    metrics["micro_f1"] = metrics["f1"]
    metrics["macro_f1"] = float(np.mean([_f1(predicted[:, c], truth[:, c])
                                         for c in range(truth.shape[1])]))
    metrics["exact_match"] = float(np.mean(np.all(predicted == truth, axis=-1)))
    metrics["binary_accuracy"] = float(np.mean(predicted == truth))
    aucs, aps = [], []
    for c, name in enumerate(class_names):
        positives = int(truth[:, c].sum())
        metrics[f"positive_rate/{name}"] = positives / max(len(truth), 1)
        if positives:
            aps.append(float(average_precision_score(truth[:, c], probabilities[:, c])))
            metrics[f"ap/{name}"] = aps[-1]
        if 0 < positives < len(truth):
            aucs.append(float(roc_auc_score(truth[:, c], probabilities[:, c])))
            metrics[f"auc/{name}"] = aucs[-1]
    if aucs:
        metrics["macro_auc"] = float(np.mean(aucs))
    if aps:
        metrics["macro_map"] = float(np.mean(aps))
    metrics["num_examples"] = int(len(truth))
    return metrics


def _f1(predicted, truth) -> float:
    """F1 of boolean decisions; 0 when there is nothing to find and nothing was predicted."""
    tp = float(np.sum(predicted & truth))
    denominator = float(np.sum(predicted) + np.sum(truth))
    return 2 * tp / denominator if denominator else 0.0
