"""Segmentation scores from a confusion matrix of pixels (rows: truth, columns: prediction).

Pixels whose truth is ``ignore_index`` are not counted. Per class c:
``IoU_c = TP / (TP + FP + FN)`` and ``Dice_c = 2 TP / (2 TP + FP + FN)``; a class absent
from both the truth and the prediction has neither (it is left out of the means and gets no
``iou/<name>`` entry). ``miou`` and ``dice`` are the means over the other classes;
``pixel_accuracy`` is the trace over the total.
"""
from __future__ import annotations

from typing import Dict, Sequence

import numpy as np


def confusion(truth: np.ndarray, predicted: np.ndarray, num_classes: int,
              ignore_index: int = 255) -> np.ndarray:
    """int64 ``[C, C]`` of the pixels of ``truth`` (ids) against ``predicted`` (ids), same shape."""
    truth = np.asarray(truth).astype(np.int64).ravel()
    predicted = np.asarray(predicted).astype(np.int64).ravel()
    if truth.shape != predicted.shape:
        raise ValueError(f"truth has {truth.size} pixels, the prediction {predicted.size}")
    keep = truth != ignore_index
    truth, predicted = truth[keep], predicted[keep]
    bad = (truth < 0) | (truth >= num_classes)
    if bad.any():
        raise ValueError(f"mask ids {sorted(set(truth[bad].tolist()))[:10]} are neither a class id "
                         f"(0..{num_classes - 1}) nor the ignore index {ignore_index}")
    if ((predicted < 0) | (predicted >= num_classes)).any():
        raise ValueError("predicted ids outside the class ids")
    return np.bincount(truth * num_classes + predicted,
                       minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def metrics_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> Dict[str, float]:
    matrix = np.asarray(matrix, np.float64)
    tp = np.diag(matrix)
    fp = matrix.sum(axis=0) - tp
    fn = matrix.sum(axis=1) - tp
    union = tp + fp + fn
    present = union > 0
    iou = np.where(present, tp / np.maximum(union, 1), np.nan)
    dice = np.where(present, 2 * tp / np.maximum(2 * tp + fp + fn, 1), np.nan)
    total = matrix.sum()
    out = {"miou": float(np.nanmean(iou)) if present.any() else 0.0,
           "dice": float(np.nanmean(dice)) if present.any() else 0.0,
           "pixel_accuracy": float(tp.sum() / total) if total else 0.0,
           "num_pixels": int(total)}
    for name, value, is_present in zip(class_names, iou, present):
        if is_present:
            out[f"iou/{name}"] = float(value)
    return out


class ConfusionAccumulator:
    """Sums the confusion of batches of (truth, predicted) id maps."""

    def __init__(self, num_classes: int, ignore_index: int):
        self.num_classes, self.ignore_index = num_classes, ignore_index
        self.matrix = np.zeros((num_classes, num_classes), np.int64)

    def add(self, truth, predicted) -> None:
        self.matrix += confusion(truth, predicted, self.num_classes, self.ignore_index)

    def metrics(self, class_names: Sequence[str]) -> Dict[str, float]:
        return metrics_from_confusion(self.matrix, class_names)


def per_class_from_confusion(matrix: np.ndarray, class_names: Sequence[str]) -> Dict[str, Dict[str, float]]:
    """Per class name: ``iou``, ``dice``, ``precision``, ``recall`` and ``truth_pixels`` /
    ``predicted_pixels``; a class absent from both truth and prediction is left out."""
    matrix = np.asarray(matrix, np.float64)
    tp = np.diag(matrix)
    predicted, truth = matrix.sum(axis=0), matrix.sum(axis=1)
    out = {}
    for c, name in enumerate(class_names):
        union = truth[c] + predicted[c] - tp[c]
        if union <= 0:
            continue
        out[name] = {"iou": float(tp[c] / union),
                     "dice": float(2 * tp[c] / (truth[c] + predicted[c])),
                     "precision": float(tp[c] / predicted[c]) if predicted[c] else 0.0,
                     "recall": float(tp[c] / truth[c]) if truth[c] else 0.0,
                     "truth_pixels": int(truth[c]), "predicted_pixels": int(predicted[c])}
    return out


MAX_SIZE_SLICES = 8


def size_slice_keys(sizes: Sequence[Sequence[int]]) -> list:
    """The slice of each image's ``(h, w)``: ``"HxW"`` while there are at most
    ``MAX_SIZE_SLICES`` distinct sizes, else power-of-two buckets of the longer side
    (``"long side 257-512"``)."""
    sizes = [(int(h), int(w)) for h, w in sizes]
    if len(set(sizes)) <= MAX_SIZE_SLICES:
        return [f"{h}x{w}" for h, w in sizes]
    keys = []
    for h, w in sizes:
        top = 1 << max(0, int(np.ceil(np.log2(max(h, w, 1)))))
        keys.append(f"long side {top // 2 + 1}-{top}")
    return keys


def side_by_side(image: np.ndarray, truth: np.ndarray, predicted: np.ndarray,
                 ignore_index: int = 255, gap: int = 4) -> np.ndarray:
    """uint8 RGB ``[H, 3W + 2 gap, 3]``: the image, its truth overlaid, the prediction overlaid."""
    from visionpipe.tasks.segmentation.overlay import overlay

    image = np.clip(np.asarray(image), 0, 255).astype(np.uint8)
    spacer = np.full((image.shape[0], gap, 3), 255, np.uint8)
    return np.concatenate([image, spacer, overlay(image, truth, ignore_index=ignore_index), spacer,
                           overlay(image, predicted, ignore_index=ignore_index)], axis=1)


def boundaries(ids: np.ndarray, ignore_index: int = 255) -> np.ndarray:
    """bool ``[H, W]``: pixels whose right or lower neighbour has another id (neither of the
    two ``ignore_index``)."""
    ids = np.asarray(ids).astype(np.int64)
    edge = np.zeros(ids.shape, bool)
    valid = ids != ignore_index
    right = (ids[:, :-1] != ids[:, 1:]) & valid[:, :-1] & valid[:, 1:]
    down = (ids[:-1] != ids[1:]) & valid[:-1] & valid[1:]
    edge[:, :-1] |= right
    edge[:-1] |= down
    return edge


def _dilate(mask: np.ndarray, radius: int) -> np.ndarray:
    """Square (Chebyshev) dilation by ``radius`` pixels."""
    out = mask.copy()
    h, w = mask.shape
    padded = np.pad(mask, radius)
    for dy in range(2 * radius + 1):
        for dx in range(2 * radius + 1):
            out |= padded[dy:dy + h, dx:dx + w]
    return out


class BoundaryAccumulator:
    """Class-agnostic boundary F1: a predicted boundary pixel matches when a truth boundary
    pixel lies within ``tolerance`` pixels (Chebyshev), and vice versa; sums over images.
    Truth boundaries are taken where the truth is not ignored, predicted ones there too."""

    def __init__(self, tolerance: int = 2, ignore_index: int = 255):
        self.tolerance, self.ignore_index = tolerance, ignore_index
        self.predicted = self.predicted_matched = self.truth = self.truth_matched = 0

    def add(self, truth, predicted) -> None:
        truth = np.asarray(truth).astype(np.int64)
        predicted = np.where(truth == self.ignore_index, self.ignore_index, np.asarray(predicted))
        t, p = boundaries(truth, self.ignore_index), boundaries(predicted, self.ignore_index)
        self.truth += int(t.sum())
        self.predicted += int(p.sum())
        self.truth_matched += int((t & _dilate(p, self.tolerance)).sum())
        self.predicted_matched += int((p & _dilate(t, self.tolerance)).sum())

    def metrics(self) -> Dict[str, float]:
        precision = self.predicted_matched / self.predicted if self.predicted else float(not self.truth)
        recall = self.truth_matched / self.truth if self.truth else float(not self.predicted)
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        return {"tolerance_px": self.tolerance, "precision": precision, "recall": recall, "f1": f1}
