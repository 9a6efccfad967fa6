import contextlib
import io
import math

import numpy as np
import pytest

from visionpipe.tasks.detection.coco_eval import CocoDetectionEvaluator, compare_to_baseline

CLASSES = ["cell", "platelet"]
# Normalised yxyx ground truth of one 100x200 (h x w) image.
GT = np.array([[0.1, 0.1, 0.5, 0.3], [0.5, 0.6, 0.9, 0.9], [0.2, 0.5, 0.4, 0.6]])
GT_CLASSES = np.array([0, 0, 1])


def test_perfect_detections_score_one():
    evaluator = CocoDetectionEvaluator(CLASSES)
    evaluator.add_image(100, 200, GT, GT_CLASSES, boxes=GT, classes=GT_CLASSES, scores=[0.9, 0.8, 0.7])
    metrics = evaluator.evaluate()
    assert metrics["map"] == pytest.approx(1.0)
    assert metrics["map_50"] == pytest.approx(1.0)
    assert metrics["recall"] == pytest.approx(1.0)
    assert metrics["ap/cell"] == pytest.approx(1.0) and metrics["ap/platelet"] == pytest.approx(1.0)


def test_half_right_detections_give_the_hand_computed_ap():
    # class 'cell': one exact hit (0.9), one false positive (0.8), one miss -> precision 1 up
    # to recall 0.5, then nothing: COCO's 101-point AP = 51/101 at every IoU threshold.
    # class 'platelet' missed entirely -> AP 0. mAP = (51/101 + 0) / 2.
    evaluator = CocoDetectionEvaluator(CLASSES)
    detections = np.array([GT[0], [0.0, 0.0, 0.05, 0.05]])
    evaluator.add_image(100, 200, GT, GT_CLASSES, boxes=detections, classes=[0, 0], scores=[0.9, 0.8])
    metrics = evaluator.evaluate()
    assert metrics["ap/cell"] == pytest.approx(51 / 101)
    assert metrics["ap/platelet"] == pytest.approx(0.0)
    assert metrics["map"] == pytest.approx(51 / 202)
    assert metrics["map_50"] == pytest.approx(51 / 202)


def test_project_path_matches_pycocotools_used_directly():
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    rng = np.random.default_rng(5)
    evaluator = CocoDetectionEvaluator(CLASSES)
    gt_json = {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cell"},
                                                               {"id": 2, "name": "platelet"}]}
    dt_json = []
    for image_id in range(1, 6):
        h, w = 120, 160
        y0, x0 = rng.uniform(0, 0.5, size=(2, 4))
        gt = np.stack([y0, x0, y0 + rng.uniform(0.1, 0.4, 4), x0 + rng.uniform(0.1, 0.4, 4)], axis=1)
        classes = rng.integers(0, 2, size=4)
        det = np.clip(gt + rng.normal(0, 0.03, size=gt.shape), 0, 1)
        scores = rng.uniform(0.2, 1.0, size=4)
        det_classes = np.where(rng.uniform(size=4) < 0.8, classes, 1 - classes)
        evaluator.add_image(h, w, gt, classes, boxes=det, classes=det_classes, scores=scores)
        gt_json["images"].append({"id": image_id, "height": h, "width": w})
        for box, c in zip(gt, classes):
            bw, bh = (box[3] - box[1]) * w, (box[2] - box[0]) * h
            gt_json["annotations"].append({"id": len(gt_json["annotations"]) + 1, "image_id": image_id,
                                           "category_id": int(c) + 1, "bbox": [box[1] * w, box[0] * h, bw, bh],
                                           "area": bw * bh, "iscrowd": 0})
        for box, c, s in zip(det, det_classes, scores):
            dt_json.append({"image_id": image_id, "category_id": int(c) + 1, "score": float(s),
                            "bbox": [box[1] * w, box[0] * h, (box[3] - box[1]) * w, (box[2] - box[0]) * h]})
    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = gt_json
        coco.createIndex()
        reference = COCOeval(coco, coco.loadRes(dt_json), iouType="bbox")
        reference.evaluate()
        reference.accumulate()
        reference.summarize()
    metrics = evaluator.evaluate()
    assert 0.0 < metrics["map"] < 1.0
    assert metrics["map"] == pytest.approx(reference.stats[0])
    assert metrics["map_50"] == pytest.approx(reference.stats[1])
    assert metrics["recall"] == pytest.approx(reference.stats[8])


def test_area_range_without_ground_truth_is_nan_not_minus_one():
    evaluator = CocoDetectionEvaluator(CLASSES)
    small = np.array([[0.1, 0.1, 0.15, 0.15]])  # 5x10 px of a 100x200 image: only 'small'
    evaluator.add_image(100, 200, small, [0], boxes=small, classes=[0], scores=[0.9])
    metrics = evaluator.evaluate()
    assert metrics["map_small"] == pytest.approx(1.0)
    assert math.isnan(metrics["map_large"])


def test_padding_rows_are_not_ground_truth():
    evaluator = CocoDetectionEvaluator(CLASSES)
    evaluator.add_image(100, 200, np.vstack([GT[:1], [[-1, -1, -1, -1]]]), [0, -1],
                        boxes=GT[:1], classes=[0], scores=[0.9])
    assert evaluator.evaluate()["num_ground_truth"] == 1


def test_gate_fails_below_threshold_and_on_a_drop_beyond_the_allowed_one():
    blessed, reasons = compare_to_baseline({"map_50": 0.6}, {"map_50": 0.7}, {"map_50": 0.5}, {"map_50": 0.05})
    assert not blessed and "dropped" in reasons[0]
    blessed, reasons = compare_to_baseline({"map_50": 0.4}, None, {"map_50": 0.5}, {"map_50": 0.05})
    assert not blessed and "below threshold" in reasons[0]
    assert compare_to_baseline({"map_50": 0.68}, {"map_50": 0.7}, {"map_50": 0.5}, {"map_50": 0.05})[0]
    assert not compare_to_baseline({"map_50": math.nan}, None, {"map_50": 0.0}, {})[0]
