"""Detection's run-report panels from a detector that returns the true boxes (no model)."""
import json
from types import SimpleNamespace

import numpy as np
from PIL import Image

from visionpipe.tasks.detection import report


def _perfect_predict(targets, size):
    def predict(images):
        boxes = np.asarray(targets["boxes"], np.float32) / size
        classes = np.asarray(targets["classes"])
        return {"detection_boxes": boxes, "detection_classes": np.maximum(classes, 0),
                "detection_scores": np.where(classes >= 0, 0.9, 0.0).astype(np.float32),
                "num_detections": (classes >= 0).sum(axis=1)}
    return predict


def test_perfect_detections_give_precision_one_curves_and_drawn_truth_beside_prediction(tmp_path):
    task = SimpleNamespace(image_size=(64, 64), class_names=["cell", "dot"])
    targets = {"boxes": np.array([[[4, 4, 30, 30], [40, 40, 60, 60]], [[10, 20, 50, 44], [0, 0, 0, 0]]], np.float32),
               "classes": np.array([[0, 1], [1, -1]]), "image_shape": np.array([[64, 64], [64, 64]])}
    images = np.full((2, 64, 64, 3), 90, np.float32)
    details = report.write_details(_perfect_predict(targets, 64), [(images, targets)], task, str(tmp_path))
    assert details["drawn"] == ["detections/eval_000.png", "detections/eval_001.png"]
    drawn = np.asarray(Image.open(tmp_path / details["drawn"][0]))
    assert drawn.shape == (64, 2 * 64 + 2, 3)
    truth, predicted = drawn[:, :64].astype(int), drawn[:, 66:].astype(int)
    for y, x in ((30, 15), (60, 50)):  # bottom edges of the two boxes (captions sit on top)
        assert (truth[y, x] != 90).any() and (truth[y, x] == predicted[y, x]).all()

    out_dir = tmp_path / "report"
    out_dir.mkdir()
    found = report.panels_of(details, str(tmp_path), task.class_names, str(out_dir))
    assert [p.images for p in found] == [["pr_curves.png"], ["val_batch0_pred.png"]]
    curves = json.loads((tmp_path / details["pr_curves_50"]).read_text())
    assert sorted(curves) == ["cell", "dot"]
    assert all(min(values) > 1 - 1e-9 for values in curves.values())  # precision 1 at every recall
