"""Decision metrics of a single-label classifier from its confusion matrix (rows: the true
class, columns: the predicted one, i.e. the arg-max class): one definition for TFMA's
results and for the scores of TFLite/ONNX files, so a gate on either reads the same numbers.

Skewed classes are where accuracy misleads: ``balanced_accuracy`` (the mean recall over the
classes present in the truth, scikit-learn's definition) and ``macro_f1`` (the mean F1 over
the classes that occur in the truth or the predictions) weigh every class alike.
``precision/<class>`` and ``recall/<class>`` are reported by class name; one that is
undefined on this data (a class never predicted / never present) has no key, so a gate on it
fails by name instead of reading 0."""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def confusion_matrix(truth: np.ndarray, predicted: np.ndarray, num_classes: int) -> np.ndarray:
    matrix = np.zeros((num_classes, num_classes), np.float64)
    np.add.at(matrix, (np.asarray(truth, int), np.asarray(predicted, int)), 1.0)
    return matrix


def confusion_metrics(matrix: np.ndarray, class_names: Sequence[str]) -> Dict[str, float]:
    matrix = np.asarray(matrix, np.float64)
    if matrix.shape != (len(class_names), len(class_names)):
        raise ValueError(f"a {matrix.shape} confusion matrix for {len(class_names)} classes")
    hits = np.diag(matrix)
    actual, predicted = matrix.sum(axis=1), matrix.sum(axis=0)
    metrics: Dict[str, float] = {}
    for c, name in enumerate(class_names):
        if actual[c]:
            metrics[f"recall/{name}"] = float(hits[c] / actual[c])
        if predicted[c]:
            metrics[f"precision/{name}"] = float(hits[c] / predicted[c])
    present = actual > 0
    if present.any():
        metrics["balanced_accuracy"] = float(np.mean(hits[present] / actual[present]))
    occurring = present | (predicted > 0)
    if occurring.any():
        f1 = 2 * hits[occurring] / (actual[occurring] + predicted[occurring])
        metrics["macro_f1"] = float(np.mean(f1))
    return metrics
