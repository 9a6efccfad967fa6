"""Class-aware non-maximum suppression that lives inside the exported graph.

keras-cv's NonMaxSuppression suppresses across classes (it keeps only each box's best class),
so an RBC and a platelet that overlap would suppress each other. Here every (box, class) pair
is a candidate and boxes are offset by ``class * (extent + 1)`` so one NMS call never
compares two classes (the torchvision ``batched_nms`` trick). Only TopKV2, GatherV2 and
NonMaxSuppressionV4 are used, all TFLite builtins, so the TFLite export keeps NMS too.
"""
from __future__ import annotations

from typing import Dict

import visionpipe  # noqa: F401
import tensorflow as tf


def class_aware_nms(boxes: tf.Tensor, scores: tf.Tensor, score_threshold: float,
                    iou_threshold: float, max_detections: int,
                    pre_nms_top_k: int = 1000) -> Dict[str, tf.Tensor]:
    """boxes ``[B, A, 4]`` yxyx (any units), scores ``[B, A, C]`` probabilities ->
    ``boxes [B, D, 4]``, ``classes [B, D]`` int32 (-1 pads), ``scores [B, D]`` (0 pads),
    ``num_detections [B]`` int32, with ``D = max_detections``, best score first."""
    boxes = tf.convert_to_tensor(boxes, tf.float32)
    scores = tf.convert_to_tensor(scores, tf.float32)

    def one_image(args):
        image_boxes, image_scores = args
        return _nms_one_image(image_boxes, image_scores, score_threshold, iou_threshold,
                              max_detections, pre_nms_top_k)

    out_boxes, out_classes, out_scores, num = tf.map_fn(
        one_image, (boxes, scores),
        fn_output_signature=(tf.TensorSpec([max_detections, 4], tf.float32),
                             tf.TensorSpec([max_detections], tf.int32),
                             tf.TensorSpec([max_detections], tf.float32),
                             tf.TensorSpec([], tf.int32)))
    return {"boxes": out_boxes, "classes": out_classes, "scores": out_scores, "num_detections": num}


def _nms_one_image(boxes, scores, score_threshold, iou_threshold, max_detections, pre_nms_top_k):
    num_classes = tf.shape(scores)[1]
    flat_scores = tf.reshape(scores, [-1])
    k = tf.minimum(pre_nms_top_k, tf.size(flat_scores))
    top_scores, top_index = tf.math.top_k(flat_scores, k=k, sorted=True)
    anchor_index = top_index // num_classes
    classes = top_index % num_classes
    candidates = tf.gather(boxes, anchor_index)
    extent = tf.reduce_max(tf.abs(candidates)) + 1.0
    offset = tf.cast(classes, tf.float32)[:, None] * extent
    # The padded form reports how many indices are real; TFLite's NMS kernels always return
    # max_output_size indices, so a count taken from the output's length would keep padding.
    keep, num = tf.raw_ops.NonMaxSuppressionV4(
        boxes=candidates + offset, scores=top_scores, max_output_size=max_detections,
        iou_threshold=iou_threshold, score_threshold=score_threshold, pad_to_max_output_size=True)
    valid = tf.range(max_detections) < num
    kept_boxes = tf.where(valid[:, None], tf.gather(candidates, keep), 0.0)
    kept_classes = tf.where(valid, tf.gather(classes, keep), -1)
    kept_scores = tf.where(valid, tf.gather(top_scores, keep), 0.0)
    return kept_boxes, kept_classes, kept_scores, num


def serving_dict(nms_out: Dict[str, tf.Tensor], image_size, class_names) -> Dict[str, tf.Tensor]:
    """NMS output in model pixels -> the detection signature's outputs (normalised boxes);
    ``image_size``: the model input's ``(height, width)`` (or one integer, a square)."""
    from visionpipe.models import preprocessing

    boxes = tf.clip_by_value(preprocessing.normalize_boxes(nms_out["boxes"], image_size), 0.0, 1.0)
    classes = nms_out["classes"]
    valid = classes >= 0
    names = tf.constant(list(class_names) + [""], dtype=tf.string)
    name_index = tf.where(valid, classes, tf.fill(tf.shape(classes), len(class_names)))
    return {
        "detection_boxes": tf.where(valid[..., None], boxes, tf.zeros_like(boxes)),
        "detection_classes": classes,
        "detection_class_names": tf.gather(names, name_index),
        "detection_scores": nms_out["scores"],
        "num_detections": nms_out["num_detections"],
    }
