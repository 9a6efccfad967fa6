"""Backbones: a small CNN (optional attention after every stage: squeeze-and-excitation or
CBAM) and three
tf.keras.applications networks, always built with ``weights=None`` (nothing is downloaded).

Every backbone takes float32 pixels in [0, 255]; ``input_normalization`` gives the first
layer that maps them to the range the backbone was designed (and pretrained) for.

``multiscale_features`` turns a backbone into a multi-scale feature extractor, one output per
stride: what feature-pyramid heads (detection), U-Net decoders and DeepLab heads build on.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, Optional, Sequence

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


@tf.keras.utils.register_keras_serializable(package="visionpipe")
class ChannelPool(tf.keras.layers.Layer):
    """[b, h, w, c] -> [b, h, w, 2]: the mean and the max over the channels (CBAM's spatial
    attention input; builtin MEAN and REDUCE_MAX ops in TFLite)."""

    def call(self, inputs):
        return tf.concat([tf.reduce_mean(inputs, axis=-1, keepdims=True),
                          tf.reduce_max(inputs, axis=-1, keepdims=True)], axis=-1)


def cbam(x: tf.Tensor, ratio: int = 4, kernel_size: int = 7, name: str = "cbam") -> tf.Tensor:
    """Convolutional Block Attention Module (Woo et al. 2018): channel attention (one MLP shared
    by the average- and the max-pooled descriptor, summed, sigmoid) then spatial attention (a
    7x7 conv over the channel mean and max, sigmoid), each multiplied into the features."""
    channels = x.shape[-1]
    reduce = tf.keras.layers.Conv2D(max(channels // ratio, 4), 1, activation="relu",
                                    name=f"{name}_reduce")
    expand = tf.keras.layers.Conv2D(channels, 1, name=f"{name}_expand")
    avg = tf.keras.layers.GlobalAveragePooling2D(keepdims=True, name=f"{name}_avg")(x)
    peak = tf.keras.layers.GlobalMaxPooling2D(keepdims=True, name=f"{name}_max")(x)
    channel = tf.keras.layers.Add(name=f"{name}_channel_sum")([expand(reduce(avg)),
                                                               expand(reduce(peak))])
    channel = tf.keras.layers.Activation("sigmoid", name=f"{name}_channel_gate")(channel)
    x = tf.keras.layers.Multiply(name=f"{name}_channel_scale")([x, channel])
    spatial = ChannelPool(name=f"{name}_channel_pool")(x)
    spatial = tf.keras.layers.Conv2D(1, kernel_size, padding="same", activation="sigmoid",
                                     name=f"{name}_spatial_gate")(spatial)
    return tf.keras.layers.Multiply(name=f"{name}_spatial_scale")([x, spatial])


ATTENTION = {"se": squeeze_excite, "cbam": cbam}


def small_cnn(image_size, width: int = 32, attention: str = "none",
              stem_stride: int = 1) -> tf.keras.Model:
    """Four conv stages (width, 2w, 4w, 8w) of conv-BN-ReLU x2; every stage after the first
    starts with a stride-2 conv. ``stem_stride=2`` makes the very first conv stride 2 too:
    every feature map is halved, so a step costs about a quarter of the FLOPs.
    ``attention``: "none", "se" or "cbam" after every stage.
    ``image_size``: one integer (square) or ``(height, width)``."""
    if attention != "none" and attention not in ATTENTION:
        raise ValueError(f"model.attention: unknown attention {attention!r}")
    inputs = tf.keras.Input((*preprocessing.hw(image_size), 3), name="normalized_pixels")
    x = inputs
    for stage, filters in enumerate((width, width * 2, width * 4, width * 8)):
        for i in range(2):
            strides = (2 if stage > 0 else stem_stride) if i == 0 else 1
            x = tf.keras.layers.Conv2D(filters, 3, strides=strides, padding="same", use_bias=False,
                                       name=f"stage{stage}_conv{i}")(x)
            x = tf.keras.layers.BatchNormalization(momentum=0.9, name=f"stage{stage}_bn{i}")(x)
            x = tf.keras.layers.ReLU(name=f"stage{stage}_relu{i}")(x)
        if attention != "none":
            x = ATTENTION[attention](x, name=f"stage{stage}_{attention}")
    return tf.keras.Model(inputs, x, name=BACKBONE_LAYER_NAME)


def build_backbone(model_config) -> tf.keras.Model:
    """A feature extractor [h, w, 3] (normalised; ``model.image_size``) -> [h', w', c],
    named ``backbone``."""
    size = preprocessing.hw(model_config.image_size)
    shape = (*size, 3)
    name = model_config.backbone
    if name == "small_cnn":
        attention = model_config.attention
        if attention == "none" and model_config.squeeze_excite:  # an unvalidated config
            attention = "se"
        return small_cnn(size, model_config.width, attention, model_config.stem_stride)
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


def layers_at_strides(model: tf.keras.Model, image_size, strides: Sequence[int]) -> Dict[int, str]:
    """``{stride: name}`` of the deepest layer whose output is the feature map at that stride
    of an ``image_size`` (``(h, w)``) input, ``ceil(h / s) x ceil(w / s)`` (what 'same'
    stride-2 convolutions and keras.applications' padded downsampling give); strides the
    model does not reach are left out."""
    height, width = preprocessing.hw(image_size)
    found = {}
    for stride in strides:
        side = (math.ceil(height / stride), math.ceil(width / stride))
        matching = [layer.name for layer in model.layers
                    if not isinstance(layer.output, (list, tuple)) and len(layer.output.shape) == 4
                    and tuple(layer.output.shape[1:3]) == side]
        if matching:
            found[stride] = matching[-1]
    return found


def multiscale_features(model_config, strides: Sequence[int] = (8, 16, 32),
                        batch_norm_momentum: Optional[float] = None,
                        name: str = "multiscale_features") -> tf.keras.Model:
    """The configured backbone as a multi-scale feature extractor: float32 pixels
    ``[h, w, 3]`` in [0, 255] (``model.image_size``; the input normalisation is inside) ->
    a list with one feature map per stride, in ``strides`` order (e.g. ``(2, 4, 8, 16, 32)``
    for a U-Net decoder, ``(8, 16, 32)`` for a feature pyramid).

    Each map is the backbone's deepest layer at that stride; strides beyond the deepest it
    reaches (``small_cnn`` stops at 8) are added as conv-BN-ReLU stride-2 blocks.
    ``model.weights`` (pretrained backbone weights) are loaded first; ``batch_norm_momentum``
    caps the backbone's BatchNorm momentum (short fine-tunes: keras.applications' 0.999 would
    leave the moving statistics near their initial values). The returned model's
    ``weights_loaded`` says what was loaded ("" when trained from scratch)."""
    strides = [int(s) for s in strides]
    if not strides or any(s < 2 or s & (s - 1) for s in strides) or strides != sorted(set(strides)):
        raise ValueError(f"strides must be increasing powers of two >= 2, got {list(strides)}")
    size = preprocessing.hw(model_config.image_size)
    base = build_backbone(model_config)
    if batch_norm_momentum is not None:
        for layer in base.layers:
            if isinstance(layer, tf.keras.layers.BatchNormalization):
                layer.momentum = min(layer.momentum, batch_norm_momentum)
    weights_loaded = load_backbone_weights(base, model_config.weights) if model_config.weights else ""
    found = layers_at_strides(base, size, strides)
    reached = [s for s in strides if s in found]
    if not reached:
        raise ValueError(f"model.backbone: {model_config.backbone} has no feature map at stride "
                         f"{strides[0]} of a {size[0]}x{size[1]} input")
    beyond = [s for s in strides if s not in found]
    if any(s < reached[-1] for s in beyond):
        raise ValueError(f"model.backbone: {model_config.backbone} has no feature map at stride "
                         f"{min(beyond)} of a {size[0]}x{size[1]} input (it reaches "
                         f"{sorted(found)})")
    features = tf.keras.Model(base.inputs, [base.get_layer(found[s]).output for s in reached],
                              name=f"{model_config.backbone}_features")
    pixels = tf.keras.Input((*size, 3), name="pixels")
    outputs = features(input_normalization(model_config.backbone)(pixels))
    outputs = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
    x, stride = outputs[-1], reached[-1]
    for target in beyond:
        while stride < target:  # extend with conv-BN-ReLU stride-2 blocks
            stride *= 2
            x = tf.keras.layers.Conv2D(x.shape[-1] * 2, 3, strides=2, padding="same", use_bias=False,
                                       name=f"extra_stride{stride}_conv")(x)
            x = tf.keras.layers.BatchNormalization(name=f"extra_stride{stride}_bn")(x)
            x = tf.keras.layers.ReLU(name=f"extra_stride{stride}_relu")(x)
        outputs.append(x)
    model = tf.keras.Model(pixels, outputs, name=name)
    model.weights_loaded = weights_loaded
    return model


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


def load_model_weights(model: tf.keras.Model, source: str) -> str:
    """Every weight of ``model`` from a SavedModel of the same architecture written by
    VisionPipe (train.warm_start); a model that does not fit is a one-line error."""
    path = Path(source)
    if not (path / "saved_model.pb").exists():
        raise WeightsError(f"train.warm_start: {source} is not a SavedModel directory")
    try:
        donor = tf.keras.models.load_model(str(path), compile=False)
    except (ValueError, TypeError, OSError) as err:
        raise WeightsError(f"train.warm_start: {source} cannot be loaded as a Keras model "
                           f"({type(err).__name__}); set train.warm_start=none") from None
    expected = [tuple(w.shape) for w in model.weights]
    got = [tuple(w.shape) for w in donor.weights]
    if expected != got:
        raise WeightsError(
            f"train.warm_start: {source} does not fit this model ({len(got)} tensors, expected "
            f"{len(expected)}): model.* changed since it was trained; set train.warm_start=none")
    model.set_weights(donor.get_weights())
    return f"all weights from the latest blessed model {source}"


def _assign_weights(backbone: tf.keras.Model, weights, source: str) -> None:
    expected = [w.shape for w in backbone.weights]
    got = [tuple(w.shape) for w in weights]
    if len(expected) != len(got) or any(tuple(e) != g for e, g in zip(expected, got)):
        raise WeightsError(
            f"model.weights: {source} does not fit the backbone: {len(got)} tensors, "
            f"expected {len(expected)} (check model.backbone, model.width and model.image_size)")
    backbone.set_weights(weights)


def pooled_backbone(model_config, image_size, pooling: str = "avg"):
    """What every image-level head starts from: float32 pixels ``[h, w, 3]`` in [0, 255] ->
    input normalisation -> the configured backbone (``model.weights`` loaded) -> global
    ``pooling`` ("avg" or "max"). Returns (inputs, pooled features, what was loaded)."""
    inputs = tf.keras.Input((*preprocessing.hw(image_size), 3), name="pixels")
    x = input_normalization(model_config.backbone)(inputs)
    backbone = build_backbone(model_config)
    weights_loaded = (load_backbone_weights(backbone, model_config.weights)
                      if model_config.weights else "")
    x = backbone(x)
    pool = (tf.keras.layers.GlobalMaxPooling2D if pooling == "max"
            else tf.keras.layers.GlobalAveragePooling2D)
    return inputs, pool(name="pool")(x), weights_loaded
