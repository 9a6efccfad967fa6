"""keras-cv detectors (RetinaNet, YOLOv8) and SSD (``ssd.py``) on VisionPipe's backbones.

The project backbone's multi-scale features (``backbones.multiscale_features``: the input
normalisation, the backbone's last feature maps at strides 8/16/32, extra stride-2 blocks
when a backbone stops earlier, as ``small_cnn`` does at stride 8) are wrapped as a keras-cv
``Backbone`` whose ``P3``/``P4``/``P5`` layers are those maps. The detector therefore takes float32
pixels in [0, 255] like every VisionPipe model, and a backbone trained for classification
transfers through ``model.weights``.
"""
from __future__ import annotations

from typing import Dict, Tuple

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import backbones, preprocessing
from visionpipe.tasks.detection import anchors as anchor_lib

BOX_FORMAT = "yxyx"  # pixels of the model input
PYRAMID_STRIDES = (8, 16, 32)
BATCH_NORM_MOMENTUM = 0.9


def pyramid_backbone(model_config):
    """The project backbone as a keras-cv Backbone with ``pyramid_level_inputs`` P3..P5 (the
    model kit's ``backbones.multiscale_features`` at strides 8/16/32), and a description of
    the pretrained weights loaded into it ("" when trained from scratch)."""
    import keras_cv

    height, width = preprocessing.hw(model_config.image_size)
    if height % 32 or width % 32:
        raise ValueError(f"model.image_size: a detector needs a height and width that are "
                         f"multiples of 32, got {model_config.image_size!r}")
    # keras.applications use BatchNorm momentum 0.999: after the few hundred steps a detector
    # gets here, the moving statistics would still be mostly their initial values and
    # inference would see a different network than training did.
    features = backbones.multiscale_features(model_config, PYRAMID_STRIDES,
                                             batch_norm_momentum=BATCH_NORM_MOMENTUM,
                                             name=f"{model_config.backbone}_pyramid")
    pixels = tf.keras.Input((height, width, 3), name="pixels")
    levels = features(pixels)
    named = [tf.keras.layers.Identity(name=f"P{level + 3}")(t) for level, t in enumerate(levels)]
    backbone = keras_cv.models.Backbone(inputs=pixels, outputs=named, name="pyramid_backbone")
    backbone.pyramid_level_inputs = {f"P{level + 3}": f"P{level + 3}" for level in range(3)}
    return backbone, features.weights_loaded


def build_detector(config, num_classes: int):
    """RetinaNet, YOLOv8 or SSD from ``config.detection``; input float32 ``[None, h, w, 3]``.

    Returns ``(model, weights_loaded)``; the layer named ``backbone`` is the normalisation,
    the project backbone and any extra pyramid blocks, up to P3..P5."""
    import keras_cv

    det = config.detection
    if det.architecture == "ssd":
        from visionpipe.tasks.detection import ssd

        return ssd.build_ssd(config, num_classes)
    backbone, weights_loaded = pyramid_backbone(config.model)
    if det.architecture == "yolov8":
        model = YOLOV8Detector(backbone=backbone, num_classes=num_classes,
                               bounding_box_format=BOX_FORMAT, fpn_depth=det.yolo_fpn_depth)
        return _name_backbone(model), weights_loaded
    num_anchors = len(det.anchor_scales) * len(det.anchor_aspect_ratios)
    prior = -np.log((1 - 0.01) / 0.01)  # focal-loss prior: every anchor starts at p=0.01
    model = keras_cv.models.RetinaNet(
        backbone=backbone, num_classes=num_classes, bounding_box_format=BOX_FORMAT,
        anchor_generator=anchor_lib.anchor_generator(
            det.anchor_sizes, det.anchor_strides, det.anchor_scales, det.anchor_aspect_ratios),
        feature_pyramid=FeaturePyramid(det.fpn_channels),
        classification_head=PredictionHead(
            num_anchors * num_classes, tf.keras.initializers.Constant(prior),
            filters=det.fpn_channels, num_conv_layers=det.head_conv_layers),
        box_head=PredictionHead(
            num_anchors * 4, tf.keras.initializers.Zeros(),
            filters=det.fpn_channels, num_conv_layers=det.head_conv_layers))
    return _name_backbone(model), weights_loaded


def _name_backbone(model):
    """keras-cv runs the backbone as an unnamed feature-extractor sub-model; naming it
    ``backbone`` gives detectors the layer every VisionPipe model has (the trainer freezes it
    for transfer learning, pretrained weights are copied from it)."""
    (extractor,) = [layer for layer in model.layers if isinstance(layer, tf.keras.Model)]
    extractor._name = backbones.BACKBONE_LAYER_NAME
    return model


def compile_detector(model, config, learning_rate: float) -> None:
    optimizer = tf.keras.optimizers.Adam(learning_rate, global_clipnorm=10.0)
    if config.detection.architecture == "ssd":  # the loss is SSD.compute_loss
        model.compile(optimizer=optimizer, jit_compile=False)
    elif config.detection.architecture == "yolov8":
        model.compile(optimizer=optimizer, classification_loss="binary_crossentropy",
                      box_loss="ciou", jit_compile=False)
    else:
        model.compile(optimizer=optimizer, classification_loss="focal",
                      box_loss=config.detection.box_loss, jit_compile=False)


def decode(model, raw: Dict[str, tf.Tensor], image_size) -> Tuple[tf.Tensor, tf.Tensor]:
    """Raw head outputs -> boxes ``[B, A, 4]`` pixel yxyx and class probabilities ``[B, A, C]``
    with the model's own decoder (anchors or anchor points), before any NMS; ``image_size``
    is the model input's ``(height, width)``."""
    import keras_cv

    from visionpipe.tasks.detection import ssd

    if isinstance(model, ssd.SSD):
        return model.decode(raw)
    height, width = preprocessing.hw(image_size)
    if isinstance(model, keras_cv.models.YOLOV8Detector):
        from keras_cv.src.models.object_detection.yolo_v8 import yolo_v8_detector as yolo

        anchor_points, stride = yolo.get_anchors(image_shape=(height, width))
        stride = stride[:, None]
        distances = yolo.decode_regression_to_boxes(raw["boxes"])
        boxes = yolo.dist2bbox(distances, anchor_points[None]) * stride[None]  # xyxy pixels
        boxes = keras_cv.bounding_box.convert_format(boxes, source="xyxy", target=BOX_FORMAT)
        return boxes, raw["classes"]
    from keras_cv.src.bounding_box.converters import _decode_deltas_to_boxes
    from keras_cv.src.models.object_detection.retinanet.retinanet import BOX_VARIANCE

    image_shape = (height, width, 3)
    anchors = tf.concat(list(model.anchor_generator(image_shape=image_shape).values()), axis=0)
    boxes = _decode_deltas_to_boxes(
        anchors=anchors, boxes_delta=raw["box"], anchor_format=model.anchor_generator.bounding_box_format,
        box_format=BOX_FORMAT, variance=BOX_VARIANCE, image_shape=image_shape)
    return boxes, tf.sigmoid(raw["classification"])


def _keras_cv_retinanet_parts():
    from keras_cv.src.models.object_detection.retinanet import feature_pyramid, prediction_head

    return feature_pyramid.FeaturePyramid, prediction_head.PredictionHead


_BaseFeaturePyramid, _BasePredictionHead = _keras_cv_retinanet_parts()


def _keras_cv_yolo_v8():
    import keras_cv

    return keras_cv.models.YOLOV8Detector


class YOLOV8Detector(_keras_cv_yolo_v8()):
    """keras-cv's YOLOv8 that ignores target keys other than boxes and classes (Keras matches
    the target structure to the outputs' when it updates compiled metrics)."""

    def compute_metrics(self, x, y, y_pred, sample_weight):
        return super().compute_metrics(x, {"boxes": y["boxes"], "classes": y["classes"]}, y_pred,
                                       sample_weight)


class FeaturePyramid(_BaseFeaturePyramid):
    """keras-cv's RetinaNet pyramid (P3..P7) with a configurable width instead of 256."""

    def __init__(self, channels: int = 64, **kwargs):
        tf.keras.layers.Layer.__init__(self, **kwargs)
        self.channels = channels
        conv = tf.keras.layers.Conv2D
        self.conv_c3_1x1, self.conv_c4_1x1, self.conv_c5_1x1 = (conv(channels, 1, 1, "same") for _ in range(3))
        self.conv_c3_3x3, self.conv_c4_3x3, self.conv_c5_3x3 = (conv(channels, 3, 1, "same") for _ in range(3))
        self.conv_c6_3x3 = conv(channels, 3, 2, "same")
        self.conv_c7_3x3 = conv(channels, 3, 2, "same")
        self.upsample_2x = tf.keras.layers.UpSampling2D(2)

    def build(self, input_shape):
        for layer, channels in ((self.conv_c3_1x1, input_shape["P3"][-1]),
                                (self.conv_c4_1x1, input_shape["P4"][-1]),
                                (self.conv_c5_1x1, input_shape["P5"][-1]),
                                (self.conv_c3_3x3, self.channels), (self.conv_c4_3x3, self.channels),
                                (self.conv_c5_3x3, self.channels),
                                (self.conv_c6_3x3, input_shape["P5"][-1]),
                                (self.conv_c7_3x3, self.channels)):
            layer.build((None, None, None, channels))
        self.built = True

    def compute_output_shape(self, input_shape):
        return tuple(tuple(input_shape[k][:-1]) + (self.channels,) for k in ("P3", "P4", "P5", "P5", "P5"))

    def get_config(self):
        return {**tf.keras.layers.Layer.get_config(self), "channels": self.channels}


class PredictionHead(_BasePredictionHead):
    """keras-cv's RetinaNet head with a configurable width instead of 256."""

    def __init__(self, output_filters, bias_initializer, filters: int = 64, num_conv_layers: int = 2,
                 **kwargs):
        super().__init__(output_filters, bias_initializer, num_conv_layers=num_conv_layers, **kwargs)
        self.filters = filters
        self.conv_layers = [
            tf.keras.layers.Conv2D(filters, 3, padding="same", kernel_initializer="orthogonal",
                                   activation="relu") for _ in range(num_conv_layers)]

    def build(self, input_shape):
        self.conv_layers[0].build(input_shape)
        intermediate = tuple(input_shape[:-1]) + (self.filters,)
        for layer in self.conv_layers[1:]:
            layer.build(intermediate)
        self.prediction_layer.build(intermediate)
        self.built = True

    def get_config(self):
        return {**super().get_config(), "filters": self.filters}
