"""Classification's evaluation panels of the run report, from one pass of the candidate's
``serving_default`` over the eval split (``evaluation_details`` keeps the probabilities):
the confusion matrix by class name (counts and normalised), precision / recall / F1 per
class, one-vs-rest PR and ROC curves, and a grid of eval images with truth and prediction."""
from __future__ import annotations

import io
import os
from typing import Dict, List, Sequence

import numpy as np

from visionpipe.report import Panel, panels

PREDICTIONS_FILE = "predictions.npz"
SAMPLE_IMAGES = 24  # eval images kept (decoded, small) for the sample-predictions grid


def write_predictions(serving_fn, eval_files: Sequence[str], target_of, feature_keys,
                      output_dir: str) -> Dict[str, str]:
    """Probabilities and true class ids of the eval split, plus its first images, saved as
    ``predictions.npz`` in ``output_dir``; returns ``{"predictions": <file name>}``."""
    from PIL import Image

    from visionpipe.core import features
    from visionpipe.core.examples import records
    from visionpipe.tasks.base import predict_examples

    outputs, targets = predict_examples(serving_fn, eval_files, feature_keys, target_of)
    labels = np.argmax(np.stack(targets), axis=-1)
    chosen = set(stratified(labels, SAMPLE_IMAGES))
    samples = [np.asarray(Image.open(io.BytesIO(bytes(features.parse_single(r, [features.ENCODED])[
        features.ENCODED].numpy()))).convert("RGB"))
        for i, r in enumerate(records(eval_files).take(max(chosen, default=-1) + 1)) if i in chosen]
    np.savez_compressed(os.path.join(output_dir, PREDICTIONS_FILE),
                        probabilities=outputs["probabilities"], labels=labels,
                        sample_index=np.asarray(sorted(chosen), np.int64),
                        samples=np.stack(samples) if _same_shape(samples) else np.zeros((0,)))
    return {"predictions": PREDICTIONS_FILE}


def stratified(labels: np.ndarray, count: int) -> List[int]:
    """Up to ``count`` example indices taken round-robin over the classes present (the
    first examples of each), so that a grid shows every class rather than the first one."""
    by_class = [list(np.flatnonzero(labels == c)) for c in np.unique(labels)]
    chosen: List[int] = []
    while len(chosen) < count and any(by_class):
        for indices in by_class:
            if indices and len(chosen) < count:
                chosen.append(int(indices.pop(0)))
    return chosen


def _same_shape(images) -> bool:
    return bool(images) and len({image.shape for image in images}) == 1


def panels_of(details: dict, evaluation_dir: str, class_names: Sequence[str],
              report_dir: str) -> List[Panel]:
    from sklearn import metrics

    name = (details or {}).get("predictions")
    if not name or not os.path.exists(os.path.join(evaluation_dir, name)):
        return []
    saved = np.load(os.path.join(evaluation_dir, name))
    probabilities, labels = saved["probabilities"], saved["labels"]
    predicted = np.argmax(probabilities, axis=-1)
    ids = list(range(len(class_names)))
    matrix = metrics.confusion_matrix(labels, predicted, labels=ids)
    precision, recall, f1, support = metrics.precision_recall_fscore_support(
        labels, predicted, labels=ids, zero_division=0)
    table = Panel("precision, recall and F1 per class (eval split, top-1)",
                  headers=("class", "precision", "recall", "F1", "images"),
                  rows=[(c, float(p), float(r), float(f), int(n))
                        for c, p, r, f, n in zip(class_names, precision, recall, f1, support)])
    out = [Panel("confusion matrix", images=[
        panels.confusion_matrix_png(matrix, class_names, report_dir, "confusion_matrix.png", False),
        panels.confusion_matrix_png(matrix, class_names, report_dir,
                                    "confusion_matrix_normalised.png", True)]), table]
    pr, roc = [], []
    for i, class_name in enumerate(class_names):
        truth = labels == i
        if truth.all() or not truth.any():
            continue  # a curve needs positives and negatives
        p, r, _ = metrics.precision_recall_curve(truth, probabilities[:, i])
        pr.append((f"{class_name} (AP {metrics.average_precision_score(truth, probabilities[:, i]):.3f})", r, p))
        fpr, tpr, _ = metrics.roc_curve(truth, probabilities[:, i])
        roc.append((f"{class_name} (AUC {metrics.auc(fpr, tpr):.3f})", fpr, tpr))
    if pr:
        out.append(Panel("precision-recall and ROC curves (one class against the rest)", images=[
            panels.curves_png(pr, report_dir, "pr_curves.png", "precision-recall", "recall",
                              "precision"),
            panels.curves_png(roc, report_dir, "roc_curves.png", "ROC", "false positive rate",
                              "true positive rate", diagonal=True)]))
    samples = saved["samples"]
    if samples.ndim == 4 and len(samples):
        shown = saved["sample_index"]
        captions = [f"true {class_names[labels[i]]}\npred {class_names[predicted[i]]} "
                    f"{probabilities[i, predicted[i]]:.2f}" for i in shown]
        colours = ["tab:green" if labels[i] == predicted[i] else "tab:red" for i in shown]
        out.append(Panel("sample eval predictions (green: right, red: wrong)", images=[
            panels.image_grid_png(samples, captions, report_dir, "val_batch0_pred.png",
                                  colours=colours)]))
    return out
