import numpy as np
import pytest

from visionpipe.tasks.detection import anchors


def test_generated_anchors_match_hand_computed_for_one_level_two_ratios():
    # 32px image, stride 16 -> centres at 8 and 24; size 8, ratio 1 -> 8x8, ratio 4 -> h 4, w 16.
    got = anchors.generate_anchors(32, sizes=[8.0], strides=[16], scales=[1.0],
                                   aspect_ratios=[1.0, 4.0], clip=False)
    expected = []
    for cy in (8.0, 24.0):
        for cx in (8.0, 24.0):
            expected.append([cy - 4, cx - 4, cy + 4, cx + 4])
            expected.append([cy - 2, cx - 8, cy + 2, cx + 8])
    np.testing.assert_allclose(got, np.array(expected), atol=1e-5)


def test_generated_anchors_are_clipped_to_the_image_and_cover_every_level():
    got = anchors.generate_anchors(64, sizes=[16.0, 32.0], strides=[8, 16], scales=[1.0, 2.0],
                                   aspect_ratios=[0.5, 1.0, 2.0])
    assert got.shape == ((8 * 8 + 4 * 4) * 2 * 3, 4)
    assert got.min() >= 0.0 and got.max() <= 64.0


def test_kmeans_on_iou_distance_recovers_three_known_box_shapes():
    rng = np.random.default_rng(0)
    truth = np.array([[6.0, 6.0], [12.0, 30.0], [48.0, 20.0]])
    boxes = np.concatenate([t * rng.uniform(0.93, 1.07, size=(200, 2)) for t in truth])
    fitted = anchors.kmeans_iou(boxes, 3, seed=1)
    np.testing.assert_allclose(fitted, truth, rtol=0.05)


def test_fitted_anchors_raise_recall_where_configured_ones_do_not_fit_the_boxes():
    rng = np.random.default_rng(3)
    wh = rng.uniform(10, 16, size=(400, 2))
    # boxes centred on the stride-8 cell centres, so the grid can match them as well as shapes can
    centres = 4.0 + 8.0 * rng.integers(1, 7, size=(400, 2))
    boxes = np.concatenate([centres - wh[:, ::-1] / 2, centres + wh[:, ::-1] / 2], axis=1)
    report = anchors.anchor_report(boxes, 64, sizes=[64.0], strides=[8], scales=[1.0],
                                   aspect_ratios=[1.0])
    assert report["configured"]["best_possible_recall"] == 0.0
    assert report["configured"]["grid_best_possible_recall"] == 0.0
    assert report["adopted"]["best_possible_recall"] > 0.9
    assert report["adopted"]["grid_best_possible_recall"] > 0.9
    assert report["fitted_clusters"]["mean_best_iou"] > report["configured"]["mean_best_iou"]
    assert 11 < report["adopted"]["sizes"][0] < 15


def test_grid_recall_misses_a_box_that_no_anchor_position_overlaps_enough():
    grid = anchors.generate_anchors(32, sizes=[8.0], strides=[16], scales=[1.0], aspect_ratios=[1.0])
    on_centre = [4.0, 4.0, 12.0, 12.0]  # exactly the first anchor
    between = [8.0, 8.0, 16.0, 16.0]  # half a stride off: IoU 16 / 112 = 1/7 at best
    fit = anchors.score_anchor_grid(np.array([on_centre, between]), grid, 0.5)
    assert fit.best_possible_recall == 0.5
    assert fit.mean_best_iou == pytest.approx((1.0 + 1 / 7) / 2, rel=1e-5)


def test_zero_area_box_shapes_are_refused_by_the_fit():
    with pytest.raises(ValueError, match="zero-area"):
        anchors.kmeans_iou(np.array([[4.0, 0.0], [5.0, 5.0]]), 1)


def _coco_like_boxes(n=300, image=256, seed=0):
    """Mostly small boxes (log-normal, median 12 px) anywhere in the image, as in COCO."""
    rng = np.random.default_rng(seed)
    w = np.clip(np.exp(rng.normal(np.log(12), 0.9, n)), 2, image - 1)
    h = np.clip(w * np.exp(rng.normal(0, 0.4, n)), 2, image - 1)
    x, y = rng.uniform(0, image - w), rng.uniform(0, image - h)
    return np.stack([y, x, y + h, x + w], axis=1)


def test_a_fit_that_lowers_the_grid_recall_is_not_recommended_and_its_small_anchors_are_flagged():
    report = anchors.anchor_report(_coco_like_boxes(), 256, [16.0, 32.0, 64.0, 128.0, 256.0],
                                   [8, 16, 32, 64, 128], [1.0, 1.26, 1.587], [0.5, 1.0, 2.0])
    configured, adopted = report["configured"], report["adopted"]
    # the shape-only score prefers the fit, the grid does not
    assert adopted["best_possible_recall"] > configured["best_possible_recall"]
    assert adopted["grid_best_possible_recall"] < configured["grid_best_possible_recall"]
    assert report["recommendation"]["adopt"] is False
    assert report["recommendation"]["reason"].startswith("keep the configured anchors")
    assert configured["smaller_than_stride"] == []
    assert [s["level"] for s in adopted["smaller_than_stride"]] == ["P3", "P4", "P5", "P6", "P7"]
    assert "P7 " in report["recommendation"]["reason"]


def test_levels_are_flagged_when_their_anchor_is_smaller_than_the_stride():
    small = anchors.smaller_than_stride([16.0, 20.0, 64.0], [8, 32, 64])
    assert small == [{"level": "P5", "size": 20.0, "stride": 32}]
