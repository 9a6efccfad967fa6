"""SSD's matching, hard-negative mining and network on hand-checked tiny cases."""
import math

import numpy as np
import pytest
import tensorflow as tf

from visionpipe.tasks.detection import ssd

# five default boxes (pixel yxyx)
ANCHORS = np.array([[0, 0, 10, 10],     # a0: identical to object 0
                    [0, 5, 10, 15],     # a1: IoU 1/3 with object 0
                    [20, 20, 30, 30],   # a2: IoU 64/136 = 0.47 with object 1, its best anchor
                    [40, 40, 50, 50],   # a3: touches nothing
                    [0, 0, 4, 4]], np.float32)  # a4: IoU 0.16 with object 0


def test_matching_takes_anchors_over_the_iou_threshold_and_each_objects_best_anchor():
    boxes = np.array([[[0, 0, 10, 10], [22, 22, 32, 32], [-1, -1, -1, -1]],   # 2 objects + padding
                      [[-1, -1, -1, -1]] * 3], np.float32)                     # no objects
    classes = np.array([[1, 0, -1], [-1, -1, -1]], np.float32)
    box_targets, class_targets = ssd.encode_targets(ANCHORS, boxes, classes, match_iou=0.5)
    # a0 by IoU 1.0; a2 only because it is object 1's best anchor (0.47 < 0.5); the padding
    # object forces no match; an image without objects is all background
    assert class_targets.numpy().tolist() == [[1, -1, 0, -1, -1], [-1] * 5]
    expected = np.zeros((2, 5, 4), np.float32)
    # object 1 centre (27, 27) vs a2's (25, 25), both 10x10: (2/10)/0.1 per axis, log(1)/0.2
    expected[0, 2] = [2.0, 2.0, 0.0, 0.0]
    np.testing.assert_allclose(box_targets.numpy(), expected, atol=1e-5)


def test_a_batch_without_any_object_columns_is_all_background():
    box_targets, class_targets = ssd.encode_targets(ANCHORS, np.zeros((2, 0, 4), np.float32),
                                                    np.zeros((2, 0), np.float32))
    assert class_targets.numpy().tolist() == [[-1] * 5] * 2 and not box_targets.numpy().any()


def test_a_lower_threshold_matches_more_anchors_to_their_best_object():
    boxes = np.array([[[0, 0, 10, 10], [22, 22, 32, 32]]], np.float32)
    _, class_targets = ssd.encode_targets(ANCHORS, boxes, np.array([[1, 0]], np.float32), match_iou=0.15)
    assert class_targets.numpy().tolist() == [[1, 1, 0, -1, 1]]


def _background_logits(b):
    return [b, 0.0, 0.0]  # background logit b: cross-entropy log(1 + 2 e^-b)


def test_hard_negative_mining_keeps_three_negatives_per_positive_of_highest_loss():
    class_targets = np.array([[0, -1, -1, -1, -1, -1]], np.int32)
    background = [3.0, -1.0, 0.0, 2.0, -2.0]  # anchors 1..5
    logits = np.array([[[0.0, 1.0, 0.0]] + [_background_logits(b) for b in background]], np.float32)
    box_targets = np.zeros((1, 6, 4), np.float32)
    box_pred = np.full((1, 6, 4), 5.0, np.float32)  # only the positive's box counts
    box_pred[0, 0] = [0.5, 2.0, 0.0, 0.0]
    classification, box = ssd.ssd_loss(box_targets, class_targets, box_pred, logits, neg_pos_ratio=3.0)
    positive = math.log(1 + 2 / math.e)  # label 0 -> softmax column 1
    hardest = [math.log(1 + 2 * math.exp(-b)) for b in (-2.0, -1.0, 0.0)]  # anchors 5, 2, 3
    assert classification.numpy() == pytest.approx(positive + sum(hardest), rel=1e-5)
    assert box.numpy() == pytest.approx(0.5 * 0.5 ** 2 + (2.0 - 0.5), rel=1e-5)  # smooth L1 summed


def test_mining_is_capped_by_the_negatives_there_are_and_gives_nothing_without_positives():
    logits = np.array([[_background_logits(b) for b in (0.0, 1.0, 2.0)]], np.float32)
    zeros = np.zeros((1, 3, 4), np.float32)
    classification, box = ssd.ssd_loss(zeros, np.array([[-1, -1, -1]]), zeros, logits)
    assert classification.numpy() == 0.0 and box.numpy() == 0.0
    # one positive, ratio 3, but only two negatives: both count, normalised by 1 positive
    classification, _ = ssd.ssd_loss(zeros, np.array([[-1, 1, -1]]), zeros, logits)
    expected = math.log(1 + 2 * math.exp(0.0)) + math.log(1 + 2 * math.exp(-2.0)) + \
        (math.log(math.exp(1.0) + 2) - 0.0)
    assert classification.numpy() == pytest.approx(expected, rel=1e-5)


def test_mining_sends_no_gradient_to_the_easy_negatives():
    class_targets = tf.constant([[0, -1, -1, -1, -1]])
    logits = tf.Variable([[[0.0, 1.0, 0.0]] + [_background_logits(b) for b in (5.0, -1.0, 0.0, 4.0)]])
    zeros = tf.zeros((1, 5, 4))
    with tf.GradientTape() as tape:
        classification, _ = ssd.ssd_loss(zeros, class_targets, zeros, logits, neg_pos_ratio=2.0)
    grad = np.abs(tape.gradient(classification, logits).numpy()[0]).sum(axis=-1)
    assert (grad[[0, 2, 3]] > 0).all() and (grad[[1, 4]] == 0).all()


def test_ssd_heads_line_up_with_the_default_boxes_and_zero_deltas_decode_to_them():
    from visionpipe.core.config import PipelineConfig

    config = PipelineConfig(task="detection")
    config.model.image_size = [64, 96]
    config.model.width = 8
    config.detection.architecture = "ssd"
    config.detection.fpn_channels = 16
    config.validate()
    model, _ = ssd.build_ssd(config, num_classes=2)
    grid = sum(math.ceil(64 / s) * math.ceil(96 / s) for s in config.detection.anchor_strides)
    assert len(model.anchor_boxes) == grid * 9 and model.output_shape["classification"] == (None, grid * 9, 3)
    assert model.get_layer("backbone").count_params() > 0
    raw = model(tf.zeros((1, 64, 96, 3)))  # box heads start at zero deltas
    boxes, scores = model.decode(raw)
    np.testing.assert_allclose(boxes[0].numpy(), model.anchor_boxes, atol=1e-3)
    assert scores.shape == (1, grid * 9, 2) and float(tf.reduce_max(scores)) < 0.02  # background prior
