"""COCO detection metrics computed by pycocotools, the reference implementation.

Ground truth and detections are accumulated image by image in normalised ``yxyx`` (the
feature spec's and the serving signature's convention) and scaled to each image's pixel size
before scoring, so the small/medium/large areas mean what they mean in COCO.
"""
from __future__ import annotations

import contextlib
import io
import math
from typing import Dict, List, Optional, Sequence

import numpy as np

# COCOeval.stats order (iouType 'bbox', maxDets [1, 10, 100]).
_STAT_NAMES = ("map", "map_50", "map_75", "map_small", "map_medium", "map_large",
               "recall_1", "recall_10", "recall", "recall_small", "recall_medium", "recall_large")
METRIC_NAMES = _STAT_NAMES


class CocoDetectionEvaluator:
    """Collects ground truth and detections, then scores them with ``COCOeval``."""

    def __init__(self, class_names: Sequence[str]):
        self.class_names = list(class_names)
        self._images: List[dict] = []
        self._annotations: List[dict] = []
        self._detections: List[dict] = []
        #: set by ``evaluate``: precision at IoU .5 over 101 recall points, by class name
        self.pr_curves_50: Dict[str, List[float]] = {}

    @property
    def num_images(self) -> int:
        return len(self._images)

    def add_image(self, height: int, width: int, gt_boxes, gt_classes,
                  boxes=None, classes=None, scores=None) -> int:
        """One image: ground truth and detections as normalised ``[N, 4]`` yxyx arrays and
        0-based class ids. Ground-truth rows whose class is negative are padding."""
        if height <= 0 or width <= 0:
            raise ValueError(f"image size must be positive, got {height}x{width}")
        image_id = len(self._images) + 1
        self._images.append({"id": image_id, "height": int(height), "width": int(width)})
        for box, label in zip(np.asarray(gt_boxes, np.float64).reshape(-1, 4),
                              np.asarray(gt_classes).reshape(-1)):
            if label < 0:
                continue
            xywh = _to_pixel_xywh(box, height, width)
            self._annotations.append({
                "id": len(self._annotations) + 1, "image_id": image_id,
                "category_id": self._category_id(label), "bbox": xywh,
                "area": xywh[2] * xywh[3], "iscrowd": 0})
        if boxes is not None:
            for box, label, score in zip(np.asarray(boxes, np.float64).reshape(-1, 4),
                                         np.asarray(classes).reshape(-1),
                                         np.asarray(scores, np.float64).reshape(-1)):
                if label < 0:
                    continue
                self._detections.append({
                    "image_id": image_id, "category_id": self._category_id(label),
                    "bbox": _to_pixel_xywh(box, height, width), "score": float(score)})
        return image_id

    def _category_id(self, label) -> int:
        label = int(label)
        if label >= len(self.class_names):
            raise ValueError(f"class id {label} is outside the {len(self.class_names)} class names "
                             f"{self.class_names}")
        return label + 1  # COCO category ids start at 1

    def coco_ground_truth(self):
        from pycocotools.coco import COCO

        coco = COCO()
        coco.dataset = {
            "images": list(self._images), "annotations": list(self._annotations),
            "categories": [{"id": i + 1, "name": n} for i, n in enumerate(self.class_names)]}
        with contextlib.redirect_stdout(io.StringIO()):
            coco.createIndex()
        return coco

    def evaluate(self) -> Dict[str, float]:
        """mAP@[.5:.95] (``map``), ``map_50``, ``map_75``, small/medium/large, recall (AR@100)
        and ``ap/<class>`` per class. An area range with no ground truth gives NaN, as
        pycocotools' -1 would otherwise read as a real (terrible) score."""
        from pycocotools.cocoeval import COCOeval

        if not self._images:
            raise ValueError("no images to evaluate")
        ground_truth = self.coco_ground_truth()
        metrics: Dict[str, float] = {"num_images": float(len(self._images)),
                                     "num_ground_truth": float(len(self._annotations)),
                                     "num_detections": float(len(self._detections))}
        if not self._detections:
            metrics.update({name: 0.0 for name in _STAT_NAMES})
            metrics.update({f"ap/{name}": 0.0 for name in self.class_names})
            return metrics
        with contextlib.redirect_stdout(io.StringIO()):
            detections = ground_truth.loadRes([dict(d) for d in self._detections])
            coco_eval = COCOeval(ground_truth, detections, iouType="bbox")
            coco_eval.evaluate()
            coco_eval.accumulate()
            coco_eval.summarize()
        for name, value in zip(_STAT_NAMES, coco_eval.stats):
            metrics[name] = float(value) if value >= 0 else math.nan
        # precision: [iou thresholds, recall points, classes, area ranges, max dets]
        precision = coco_eval.eval["precision"][:, :, :, 0, -1]
        # precision at IoU .5 at recall 0, .01, ..., 1 by class (-1: no ground truth), for plots
        self.pr_curves_50 = {name: precision[0, :, index].tolist()
                             for index, name in enumerate(self.class_names)}
        for index, name in enumerate(self.class_names):
            values = precision[:, :, index]
            values = values[values > -1]
            metrics[f"ap/{name}"] = float(values.mean()) if values.size else math.nan
        return metrics


def _to_pixel_xywh(box, height: int, width: int) -> List[float]:
    ymin, xmin, ymax, xmax = (float(v) for v in box)
    x0, y0 = xmin * width, ymin * height
    return [x0, y0, (xmax - xmin) * width, (ymax - ymin) * height]


def compare_to_baseline(candidate: Dict[str, float], baseline: Optional[Dict[str, float]],
                        thresholds: Dict[str, float], max_drops: Dict[str, float]):
    """Gate: every threshold met and no metric dropped more than allowed vs the baseline.

    Returns ``(blessed, reasons)``; each reason names the metric and the numbers."""
    reasons = []
    for name, minimum in thresholds.items():
        if name not in candidate:
            reasons.append(f"{name}: not computed (known: {sorted(candidate)})")
        elif not candidate[name] >= minimum:  # NaN fails
            reasons.append(f"{name}={candidate[name]:.4f} below threshold {minimum}")
    if baseline is not None:
        for name, allowed in max_drops.items():
            if name not in candidate or name not in baseline:
                reasons.append(f"{name}: missing for the change-vs-baseline check")
                continue
            drop = baseline[name] - candidate[name]
            if not drop <= allowed:
                reasons.append(f"{name} dropped {drop:.4f} vs baseline {baseline[name]:.4f} "
                               f"(max drop {allowed})")
    return not reasons, reasons
