"""Backbones: a small CNN (optional squeeze-and-excitation attention) and three
tf.keras.applications networks, always built with ``weights=None`` (nothing is downloaded).

Every backbone takes float32 pixels in [0, 255]; ``input_normalization`` gives the first
layer that maps them to the range the backbone was designed (and pretrained) for.
"""
from __future__ import annotations

from pathlib import Path

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import preprocessing

BACKBONE_LAYER_NAME = "backbone"


@tf.keras.utils.register_keras_serializable(package="visionpipe")
class CaffeNormalization(tf.keras.layers.Layer):
    """RGB [0, 255] -> BGR minus the ImageNet mean (ResNet50's 'caffe' convention)."""

    MEAN_BGR = (103.939, 116.779, 123.68)

    def call(self, inputs):
        return tf.reverse(inputs, axis=[-1]) - tf.constant(self.MEAN_BGR, dtype=inputs.dtype)


def input_normalization(backbone: str) -> tf.keras.layers.Layer:
    if backbone == "resnet50":
        return CaffeNormalization(name="normalize")
    if backbone == "efficientnet_b0":
        # EfficientNet carries its own Rescaling + Normalization layers and takes [0, 255].
        return tf.keras.layers.Identity(name="normalize")
    return preprocessing.normalization_layer()


def squeeze_excite(x: tf.Tensor, ratio: int = 4, name: str = "se") -> tf.Tensor:
    channels = x.shape[-1]
    s = tf.keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_squeeze")(x)
    s = tf.keras.layers.Conv2D(max(channels // ratio, 4), 1, activation="relu", name=f"{name}_reduce")(s)
    s = tf.keras.layers.Conv2D(channels, 1, activation="sigmoid", name=f"{name}_expand")(s)
    return tf.keras.layers.Multiply(name=f"{name}_scale")([x, s])


def small_cnn(image_size, width: int = 32, se: bool = False) -> tf.keras.Model:
    """Four conv stages (width, 2w, 4w, 8w), each conv-BN-ReLU x2 then stride-2 downsampling;
    ``image_size``: one integer (square) or ``(height, width)``."""
    inputs = tf.keras.Input((*preprocessing.hw(image_size), 3), name="normalized_pixels")
    x = inputs
    for stage, filters in enumerate((width, width * 2, width * 4, width * 8)):
        for i in range(2):
            strides = 2 if (i == 0 and stage > 0) else 1
            x = tf.keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                                       name=f"stage{stage}_conv{i}")(x)
            x = tf.keras.layers.BatchNormalization(momentum=0.9, name=f"stage{stage}_bn{i}")(x)
            x = tf.keras.layers.ReLU(name=f"stage{stage}_relu{i}")(x)
        if se:
            x = squeeze_excite(x, name=f"stage{stage}_se")
    return tf.keras.Model(inputs, x, name=BACKBONE_LAYER_NAME)


def build_backbone(model_config) -> tf.keras.Model:
    """A feature extractor [h, w, 3] (normalised; ``model.image_size``) -> [h', w', c],
    named ``backbone``."""
    size = preprocessing.hw(model_config.image_size)
    shape = (*size, 3)
    name = model_config.backbone
    if name == "small_cnn":
        return small_cnn(size, model_config.width, model_config.squeeze_excite)
    apps = tf.keras.applications
    if name == "mobilenet_v2":
        net = apps.MobileNetV2(input_shape=shape, include_top=False, weights=None)
    elif name == "efficientnet_b0":
        net = apps.EfficientNetB0(input_shape=shape, include_top=False, weights=None)
    elif name == "resnet50":
        net = apps.ResNet50(input_shape=shape, include_top=False, weights=None)
    else:
        raise ValueError(f"model.backbone: unknown backbone {name!r}")
    return tf.keras.Model(net.inputs, net.outputs, name=BACKBONE_LAYER_NAME)


class WeightsError(ValueError):
    """Pretrained weights are missing or do not fit the backbone."""


def load_backbone_weights(backbone: tf.keras.Model, source: str) -> str:
    """Load pretrained backbone weights from a local file or an earlier pipeline's model.

    ``source`` is a Keras weights file (.h5 / .weights.h5) of the backbone, or a SavedModel
    directory written by VisionPipe (a pushed version or a Trainer output), whose layer
    ``backbone`` is copied. Returns a short description of what was loaded."""
    path = Path(source)
    if not path.exists():
        raise WeightsError(f"model.weights: file not found: {source} (weights are never downloaded)")
    if path.is_dir():
        if not (path / "saved_model.pb").exists():
            raise WeightsError(f"model.weights: {source} is a directory without saved_model.pb")
        donor = tf.keras.models.load_model(str(path), compile=False)
        try:
            donor_backbone = donor.get_layer(BACKBONE_LAYER_NAME)
        except ValueError:
            raise WeightsError(f"model.weights: {source} has no layer named 'backbone'") from None
        _assign_weights(backbone, donor_backbone.get_weights(), source)
        return f"backbone weights from model {source}"
    try:
        backbone.load_weights(str(path))
    except (ValueError, OSError, tf.errors.OpError) as err:
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise WeightsError(f"model.weights: {source} does not fit backbone "
                           f"{backbone.name!r}: {first_line}") from None
    return f"backbone weights from file {source}"


def _assign_weights(backbone: tf.keras.Model, weights, source: str) -> None:
    expected = [w.shape for w in backbone.weights]
    got = [tuple(w.shape) for w in weights]
    if len(expected) != len(got) or any(tuple(e) != g for e, g in zip(expected, got)):
        raise WeightsError(
            f"model.weights: {source} does not fit the backbone: {len(got)} tensors, "
            f"expected {len(expected)} (check model.backbone, model.width and model.image_size)")
    backbone.set_weights(weights)
