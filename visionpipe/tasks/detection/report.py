"""Detection's evaluation panels of the run report: per-class precision-recall curves at IoU
.5 (pycocotools' accumulated precision) and eval images with true and predicted boxes."""
from __future__ import annotations

import json
import os
from typing import Dict, List, Sequence

import numpy as np

from visionpipe.report import Panel, panels

PR_FILE = "pr_curves_50.json"
DRAWN_FOLDER = "detections"
DRAWN_IMAGES = 12
MIN_SCORE_DRAWN = 0.3  # predicted boxes below this are left off the drawings


def write_details(predict, batches: Sequence, task, output_dir: str) -> Dict[str, object]:
    """From (images, targets) batches of the eval split: the PR curves as ``pr_curves_50.json``
    and the first images drawn (truth | prediction) under ``detections/``; names relative to
    ``output_dir``."""
    from PIL import Image

    from visionpipe.models import draw
    from visionpipe.tasks.detection.coco_eval import CocoDetectionEvaluator
    from visionpipe.tasks.detection.evaluation import _add_batch

    height, width = task.image_size
    evaluator = CocoDetectionEvaluator(task.class_names)
    drawn: List[str] = []
    os.makedirs(os.path.join(output_dir, DRAWN_FOLDER), exist_ok=True)
    for images, targets in batches:
        outputs = {k: np.asarray(v) for k, v in predict(images).items()}
        shapes = np.asarray(targets["image_shape"])
        truth = np.asarray(targets["boxes"], np.float64) / np.array([height, width, height, width])
        classes = np.asarray(targets["classes"])
        _add_batch(evaluator, shapes[:, 0], shapes[:, 1], truth, classes, outputs)
        for i in range(len(images)):
            if len(drawn) >= DRAWN_IMAGES:
                break
            pixels = np.clip(np.asarray(images[i]), 0, 255).astype(np.uint8)
            keep = classes[i] >= 0
            left = draw.draw_boxes(pixels, truth[i][keep].tolist(),
                                   [task.class_names[int(c)] for c in classes[i][keep]],
                                   [int(c) for c in classes[i][keep]], width=1)
            count = int(outputs["num_detections"][i])
            scores = outputs["detection_scores"][i][:count]
            shown = scores >= MIN_SCORE_DRAWN
            ids = outputs["detection_classes"][i][:count][shown].astype(int)
            right = draw.draw_boxes(pixels, outputs["detection_boxes"][i][:count][shown].tolist(),
                                    [task.class_names[c] for c in ids], ids, scores[shown], width=1)
            name = os.path.join(DRAWN_FOLDER, f"eval_{len(drawn):03d}.png")
            Image.fromarray(np.concatenate([left, np.full_like(left[:, :2], 255), right], axis=1)).save(
                os.path.join(output_dir, name))
            drawn.append(name)
    evaluator.evaluate()
    with open(os.path.join(output_dir, PR_FILE), "w") as f:
        json.dump(evaluator.pr_curves_50, f)
    return {"pr_curves_50": PR_FILE, "drawn": drawn}


def panels_of(details: dict, evaluation_dir: str, class_names: Sequence[str],
              report_dir: str) -> List[Panel]:
    from PIL import Image

    details = details or {}
    out: List[Panel] = []
    pr_file = os.path.join(evaluation_dir, details.get("pr_curves_50") or "-")
    if os.path.exists(pr_file):
        with open(pr_file) as f:
            curves = json.load(f)
        recall = np.linspace(0, 1, 101)
        lines = []
        for name, precision in curves.items():
            precision = np.asarray(precision)
            if (precision > -1).any():  # -1: the class has no ground truth
                ap = float(np.where(precision > -1, precision, 0).mean())
                lines.append((f"{name} (AP@.5 {ap:.3f})", recall, np.clip(precision, 0, 1)))
        if lines:
            out.append(Panel("precision-recall per class at IoU 0.5", images=[panels.curves_png(
                lines, report_dir, "pr_curves.png", "precision-recall (IoU 0.5)", "recall",
                "precision")]))
    drawn = [os.path.join(evaluation_dir, name) for name in details.get("drawn") or []]
    if drawn:
        images = [np.asarray(Image.open(path).convert("RGB")) for path in drawn]
        out.append(Panel(f"eval images: true boxes | predicted boxes (score >= {MIN_SCORE_DRAWN})",
                         images=[panels.image_grid_png(images, [""] * len(images), report_dir,
                                                       "val_batch0_pred.png", columns=4)]))
    return out
