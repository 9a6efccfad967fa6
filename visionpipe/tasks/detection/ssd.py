"""SSD (Liu et al. 2016) on the project's backbones: SSD-MobileNetV2 with ``model.backbone:
mobilenet_v2``.

keras-cv 0.9 has no SSD, so the model, its matching and its loss are written here, on
keras-cv's parts where they fit:

- default boxes: keras-cv's ``AnchorGenerator`` through ``anchors.anchor_generator`` (the
  same ``detection.anchor_*`` keys as RetinaNet, so ``visionpipe anchors`` fits them too);
- IoU: ``keras_cv.bounding_box.compute_iou``; box deltas: keras-cv's ``_encode_box_to_deltas``
  / ``_decode_deltas_to_boxes`` with RetinaNet's variance (0.1, 0.1, 0.2, 0.2), SSD's own;
- box loss: ``keras_cv.losses.SmoothL1Loss`` (or Keras' ``Huber``).

Written here: SSD's matching (every anchor whose best IoU is >= ``detection.ssd_match_iou``,
plus the best anchor of every object, so no object goes unmatched; keras-cv's ``BoxMatcher``
force-matches the padding columns of a dense batch too, and RetinaNet's label encoder has an
ignore band SSD does not), the softmax loss with background class 0 and hard-negative mining
(per image, the ``ssd_neg_pos_ratio`` x positives negatives of highest loss), and the network:
the backbone's maps at the configured strides up to 32, SSD's extra feature layers (1x1
reduce, 3x3 stride 2) beyond, and one 3x3 conv class head and box head per map.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import backbones, preprocessing

BOX_VARIANCE = (0.1, 0.1, 0.2, 0.2)
BACKBONE_MAX_STRIDE = 32
BACKGROUND_PRIOR = 0.99  # every default box starts at P(background) = 0.99


def encode_targets(anchors, gt_boxes, gt_classes, match_iou: float = 0.5,
                   variance=BOX_VARIANCE) -> Tuple[tf.Tensor, tf.Tensor]:
    """SSD's matching: anchors ``[A, 4]`` yxyx, dense ground truth ``boxes [B, N, 4]`` yxyx
    and ``classes [B, N]`` (-1 pads) -> box targets ``[B, A, 4]`` (deltas, 0 where
    unmatched) and class targets ``[B, A]`` int32 (-1 background, else the object's class).

    An anchor is matched to the object of its highest IoU when that IoU is >= ``match_iou``;
    every object also takes its single best anchor (that match wins over the threshold one)."""
    from keras_cv import bounding_box
    from keras_cv.src.bounding_box.converters import _encode_box_to_deltas

    anchors = tf.convert_to_tensor(anchors, tf.float32)
    gt_boxes = tf.convert_to_tensor(gt_boxes, tf.float32)
    gt_classes = tf.convert_to_tensor(gt_classes, tf.float32)
    # one padding object more, so a batch without any objects (N = 0) still has a column
    batch = tf.shape(gt_boxes)[0]
    gt_boxes = tf.concat([gt_boxes, tf.zeros([batch, 1, 4])], axis=1)
    gt_classes = tf.concat([gt_classes, -tf.ones([batch, 1])], axis=1)
    num_anchors = tf.shape(anchors)[0]
    valid = gt_classes >= 0  # [B, N + 1]
    iou = bounding_box.compute_iou(anchors, gt_boxes, bounding_box_format="yxyx")  # [B, A, N + 1]
    iou = tf.where(valid[:, None, :], iou, -1.0)
    best_gt = tf.argmax(iou, axis=-1, output_type=tf.int32)  # [B, A]
    positive = tf.reduce_max(iou, axis=-1) >= match_iou
    # each real object's best anchor
    best_anchor = tf.argmax(iou, axis=1, output_type=tf.int32)  # [B, N + 1]
    forced = tf.one_hot(best_anchor, num_anchors) * tf.cast(valid, tf.float32)[..., None]  # [B, N, A]
    forced_any = tf.reduce_max(forced, axis=1) > 0  # [B, A]
    forced_gt = tf.argmax(forced, axis=1, output_type=tf.int32)
    matched = tf.where(forced_any, forced_gt, best_gt)
    positive = tf.logical_or(positive, forced_any)

    matched_boxes = tf.gather(gt_boxes, matched, batch_dims=1)  # [B, A, 4]
    deltas = _encode_box_to_deltas(anchors=anchors, boxes=matched_boxes, anchor_format="yxyx",
                                   box_format="yxyx", variance=variance)
    box_targets = tf.where(positive[..., None], deltas, 0.0)
    class_targets = tf.where(positive, tf.gather(gt_classes, matched, batch_dims=1), -1.0)
    return box_targets, tf.cast(class_targets, tf.int32)


def ssd_loss(box_targets, class_targets, box_pred, class_logits, neg_pos_ratio: float = 3.0,
             box_loss: str = "smoothl1") -> Tuple[tf.Tensor, tf.Tensor]:
    """SSD's loss: ``(classification, box)``, each summed over the selected anchors and
    divided by the batch's number of positives (at least 1).

    Classification: softmax cross-entropy (class 0 = background, object class k -> k + 1)
    over the positives and, per image, the ``neg_pos_ratio * positives`` background anchors
    of highest loss (hard-negative mining; the rest of the background adds nothing).
    Box: smooth L1 summed over the four deltas of the positives."""
    import keras_cv

    class_targets = tf.cast(class_targets, tf.int32)
    positive = class_targets >= 0  # [B, A]
    cross_entropy = tf.nn.sparse_softmax_cross_entropy_with_logits(
        labels=class_targets + 1, logits=tf.cast(class_logits, tf.float32))  # [B, A]
    num_anchors = tf.shape(class_targets)[1]
    num_pos = tf.reduce_sum(tf.cast(positive, tf.int32), axis=1)  # [B]
    num_neg = tf.minimum(tf.cast(tf.cast(num_pos, tf.float32) * neg_pos_ratio, tf.int32),
                         num_anchors - num_pos)
    # rank the background anchors by their loss (positives rank last)
    background_loss = tf.where(positive, -1.0, tf.stop_gradient(cross_entropy))
    order = tf.argsort(background_loss, axis=1, direction="DESCENDING", stable=True)
    rank = tf.argsort(order, axis=1, stable=True)
    negative = tf.logical_and(tf.logical_not(positive), rank < num_neg[:, None])
    selected = tf.cast(tf.logical_or(positive, negative), tf.float32)
    normalizer = tf.maximum(tf.cast(tf.reduce_sum(num_pos), tf.float32), 1.0)
    classification = tf.reduce_sum(cross_entropy * selected) / normalizer

    if box_loss == "huber":
        per_coordinate = tf.keras.losses.Huber(delta=1.0, reduction="none")
    else:
        per_coordinate = keras_cv.losses.SmoothL1Loss(l1_cutoff=1.0, reduction="none")
    # both average the four deltas; SSD sums them
    box = 4.0 * per_coordinate(tf.cast(box_targets, tf.float32), tf.cast(box_pred, tf.float32))
    box = tf.reduce_sum(box * tf.cast(positive, tf.float32)) / normalizer
    return classification, box


class SSD(tf.keras.Model):
    """A functional SSD: float32 pixels ``[B, h, w, 3]`` in [0, 255] -> ``{"boxes": [B, A, 4]
    deltas, "classification": [B, A, C + 1] logits}`` (column 0 background), in the order of
    ``anchor_boxes`` (level by level, location-major, keras-cv's AnchorGenerator order).
    ``fit`` takes the task's dense targets and trains with ``ssd_loss``."""

    def __init__(self, inputs, outputs, anchor_boxes, match_iou: float = 0.5,
                 neg_pos_ratio: float = 3.0, box_loss: str = "smoothl1", **kwargs):
        super().__init__(inputs=inputs, outputs=outputs, **kwargs)
        self.anchor_boxes = np.asarray(anchor_boxes, np.float32)
        self.match_iou = float(match_iou)
        self.neg_pos_ratio = float(neg_pos_ratio)
        self.box_loss_name = box_loss
        self.loss_tracker = tf.keras.metrics.Mean(name="loss")
        self.box_loss_tracker = tf.keras.metrics.Mean(name="box_loss")
        self.classification_loss_tracker = tf.keras.metrics.Mean(name="classification_loss")

    @property
    def metrics(self):
        return [self.loss_tracker, self.box_loss_tracker, self.classification_loss_tracker]

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None):
        box_targets, class_targets = encode_targets(self.anchor_boxes, y["boxes"], y["classes"],
                                                    self.match_iou)
        classification, box = ssd_loss(box_targets, class_targets, y_pred["boxes"],
                                       y_pred["classification"], self.neg_pos_ratio,
                                       self.box_loss_name)
        total = classification + box
        if self.losses:
            total += tf.add_n(self.losses)
        self.loss_tracker.update_state(total)
        self.box_loss_tracker.update_state(box)
        self.classification_loss_tracker.update_state(classification)
        return total

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return {m.name: m.result() for m in self.metrics}

    def decode(self, raw: Dict[str, tf.Tensor]) -> Tuple[tf.Tensor, tf.Tensor]:
        """Raw outputs -> boxes ``[B, A, 4]`` pixel yxyx and object class probabilities
        ``[B, A, C]`` (the softmax without its background column), before NMS."""
        from keras_cv.src.bounding_box.converters import _decode_deltas_to_boxes

        boxes = _decode_deltas_to_boxes(anchors=tf.constant(self.anchor_boxes), boxes_delta=raw["boxes"],
                                        anchor_format="yxyx", box_format="yxyx",
                                        variance=BOX_VARIANCE)
        return boxes, tf.nn.softmax(raw["classification"], axis=-1)[..., 1:]


def _conv_bn_relu(x, filters, kernel, stride, name):
    x = tf.keras.layers.Conv2D(filters, kernel, strides=stride, padding="same", use_bias=False,
                               name=f"{name}_conv")(x)
    x = tf.keras.layers.BatchNormalization(momentum=0.9, name=f"{name}_bn")(x)
    return tf.keras.layers.ReLU(6.0, name=f"{name}_relu")(x)


def build_ssd(config, num_classes: int) -> Tuple[SSD, str]:
    """SSD from ``config.model`` and ``config.detection``; returns ``(model, weights_loaded)``.
    The layer named ``backbone`` is the input normalisation and the project backbone's maps
    at the strides up to 32."""
    from visionpipe.tasks.detection import anchors as anchor_lib

    det = config.detection
    height, width = preprocessing.hw(config.model.image_size)
    strides = [int(s) for s in det.anchor_strides]
    backbone_strides = [s for s in strides if s <= BACKBONE_MAX_STRIDE]
    if strides[-1] > BACKBONE_MAX_STRIDE and backbone_strides[-1] != BACKBONE_MAX_STRIDE:
        backbone_strides.append(BACKBONE_MAX_STRIDE)  # the extra layers start from stride 32
    features = backbones.multiscale_features(config.model, backbone_strides, batch_norm_momentum=0.9,
                                             name=backbones.BACKBONE_LAYER_NAME)
    pixels = tf.keras.Input((height, width, 3), name="pixels")
    maps = features(pixels)
    maps = list(maps) if isinstance(maps, (list, tuple)) else [maps]
    by_stride = dict(zip(backbone_strides, maps))
    x = by_stride[backbone_strides[-1]]
    for stride in strides:
        if stride > BACKBONE_MAX_STRIDE:  # SSD's extra feature layers
            x = _conv_bn_relu(x, max(det.fpn_channels // 2, 8), 1, 1, f"ssd_extra{stride}_reduce")
            x = _conv_bn_relu(x, det.fpn_channels, 3, 2, f"ssd_extra{stride}")
            by_stride[stride] = x

    per_location = len(det.anchor_scales) * len(det.anchor_aspect_ratios)
    prior = np.log(BACKGROUND_PRIOR * num_classes / (1.0 - BACKGROUND_PRIOR))
    class_bias = np.tile([prior] + [0.0] * num_classes, per_location).astype(np.float32)
    boxes, logits = [], []
    for stride in strides:
        level = by_stride[stride]
        box = tf.keras.layers.Conv2D(per_location * 4, 3, padding="same", kernel_initializer="zeros",
                                     name=f"ssd_box_head_s{stride}")(level)
        cls = tf.keras.layers.Conv2D(per_location * (num_classes + 1), 3, padding="same",
                                     bias_initializer=tf.keras.initializers.Constant(class_bias.tolist()),
                                     name=f"ssd_class_head_s{stride}")(level)
        boxes.append(tf.keras.layers.Reshape((-1, 4), name=f"ssd_boxes_s{stride}")(box))
        logits.append(tf.keras.layers.Reshape((-1, num_classes + 1), name=f"ssd_logits_s{stride}")(cls))
    outputs = {"boxes": tf.keras.layers.Concatenate(axis=1, name="boxes")(boxes),
               "classification": tf.keras.layers.Concatenate(axis=1, name="classification")(logits)}
    anchor_boxes = anchor_lib.generate_anchors((height, width), det.anchor_sizes, strides,
                                               det.anchor_scales, det.anchor_aspect_ratios)
    model = SSD(pixels, outputs, anchor_boxes, match_iou=det.ssd_match_iou,
                neg_pos_ratio=det.ssd_neg_pos_ratio, box_loss=det.box_loss, name="ssd")
    if model.output_shape["boxes"][1] != len(anchor_boxes):
        raise ValueError(f"SSD heads predict {model.output_shape['boxes'][1]} boxes but the "
                         f"anchor generator lays {len(anchor_boxes)} (detection.anchor_strides "
                         f"{strides} on a {height}x{width} input)")
    return model, features.weights_loaded
