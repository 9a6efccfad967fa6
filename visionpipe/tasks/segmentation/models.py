"""Segmentation networks: float32 pixels ``[B, h, w, 3]`` in [0, 255] -> per-pixel class
probabilities ``[B, h, w, C]`` (softmax, float32), all plain Keras functional models (they
save, reload, clone and convert to TFLite like the classifiers). The layer named
``backbone`` is the encoder (what transfer learning copies).

- ``unet``: Ronneberger et al.'s encoder-decoder; ``segmentation.encoder=paper`` builds its
  own encoder (conv-BN-ReLU x2, max-pool, ``depth`` times, ``width`` doubling) with the skip
  connections at every scale; ``backbone`` uses ``model.backbone``'s multi-scale features at
  strides 2..32 (``backbones.multiscale_features``) as the encoder and skips.
- ``fcn``: FCN-8s: 1x1 class scores on the backbone's stride 32, 16 and 8 features, fused
  by learned 2x up-convolutions, then a bilinear 8x upsampling.
- ``deeplabv3plus``: DeepLabV3+ (Chen et al. 2018) built as keras-cv 0.9's
  ``DeepLabV3Plus`` builds it (keras-cv's ``SpatialPyramidPooling`` ASPP on stride 32, a
  48-channel 1x1 projection of stride 4, bilinear 8x up, concatenation, head, bilinear 4x
  up), but as a functional graph on the project backbone; see ``deeplabv3plus``.
- ``segnet``: Badrinarayanan et al.'s encoder-decoder whose decoder unpools with the
  encoder's max-pooling switches (``PoolSwitches``: where each pooled maximum came from).
"""
from __future__ import annotations

from typing import List, Tuple

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import backbones

layers = tf.keras.layers


def _conv_bn_relu(x, filters: int, name: str, kernel: int = 3, dilation: int = 1):
    x = layers.Conv2D(filters, kernel, padding="same", use_bias=False, dilation_rate=dilation,
                      name=f"{name}_conv")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.ReLU(name=f"{name}_relu")(x)


def _double_conv(x, filters: int, name: str):
    return _conv_bn_relu(_conv_bn_relu(x, filters, f"{name}_a"), filters, f"{name}_b")


def _classifier(x, num_classes: int):
    x = layers.Conv2D(num_classes, 1, name="logits")(x)
    return layers.Activation("softmax", dtype="float32", name="probabilities")(x)


def _pixels(image_size) -> tf.Tensor:
    return tf.keras.Input((*image_size, 3), name="pixels")


# --- U-Net ----------------------------------------------------------------------------------
def unet_encoder(image_size, depth: int, width: int) -> tf.keras.Model:
    """The paper's contracting path: [h, w, 3] pixels -> ``depth + 1`` feature maps, strides
    1, 2, ..., 2**depth (the last is the bottleneck), named ``backbone``."""
    pixels = _pixels(image_size)
    x = backbones.input_normalization("small_cnn")(pixels)
    outputs = []
    for level in range(depth + 1):
        if level:
            x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
        x = _double_conv(x, width * 2 ** level, f"enc{level}")
        outputs.append(x)
    return tf.keras.Model(pixels, outputs, name=backbones.BACKBONE_LAYER_NAME)


def _unet_decoder(features: List[tf.Tensor], widths: List[int]) -> tf.Tensor:
    """Up-convolve the deepest map 2x, concatenate the skip of that scale, conv-conv; up to
    the shallowest skip."""
    x = features[-1]
    for level in range(len(features) - 2, -1, -1):
        x = layers.Conv2DTranspose(widths[level], 2, strides=2, padding="same", name=f"dec{level}_up")(x)
        x = layers.Concatenate(name=f"dec{level}_concat")([x, features[level]])
        x = _double_conv(x, widths[level], f"dec{level}")
    return x


def unet(config, num_classes: int, size) -> Tuple[tf.keras.Model, str]:
    seg = config.segmentation
    pixels = _pixels(size)
    if seg.encoder == "paper":
        encoder, weights_loaded = unet_encoder(size, seg.depth, seg.width), ""
        features = encoder(pixels)
        x = _unet_decoder(features, [seg.width * 2 ** level for level in range(seg.depth + 1)])
    else:
        encoder = backbones.multiscale_features(config.model, (2, 4, 8, 16, 32),
                                                name=backbones.BACKBONE_LAYER_NAME)
        weights_loaded = encoder.weights_loaded
        features = encoder(pixels)
        x = _unet_decoder(features, [seg.head_channels] * len(features))
        # stride 2 -> 1: the encoder has no stride-1 skip
        x = layers.Conv2DTranspose(seg.head_channels, 2, strides=2, padding="same", name="dec_full_up")(x)
        x = _conv_bn_relu(x, seg.head_channels, "dec_full")
    return tf.keras.Model(pixels, _classifier(x, num_classes), name=f"unet_{seg.encoder}"), weights_loaded


# --- FCN-8s ---------------------------------------------------------------------------------
def fcn(config, num_classes: int, size) -> Tuple[tf.keras.Model, str]:
    seg = config.segmentation
    pixels = _pixels(size)
    encoder = backbones.multiscale_features(config.model, (8, 16, 32), name=backbones.BACKBONE_LAYER_NAME)
    s8, s16, s32 = encoder(pixels)
    score32 = layers.Conv2D(num_classes, 1, name="score32")(_conv_bn_relu(s32, seg.head_channels, "fc"))
    score16 = layers.Conv2D(num_classes, 1, name="score16")(s16)
    score8 = layers.Conv2D(num_classes, 1, name="score8")(s8)
    x = layers.Conv2DTranspose(num_classes, 4, strides=2, padding="same", name="up32")(score32)
    x = layers.Add(name="fuse16")([x, score16])
    x = layers.Conv2DTranspose(num_classes, 4, strides=2, padding="same", name="up16")(x)
    x = layers.Add(name="fuse8")([x, score8])
    x = layers.UpSampling2D(8, interpolation="bilinear", name="up8")(x)
    outputs = layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    return tf.keras.Model(pixels, outputs, name="fcn8s"), encoder.weights_loaded


# --- DeepLabV3+ -----------------------------------------------------------------------------
def deeplabv3plus(config, num_classes: int, size) -> Tuple[tf.keras.Model, str]:
    """keras-cv 0.9's ``DeepLabV3Plus`` graph, functional, on the project backbone.

    Not ``keras_cv.models.DeepLabV3Plus`` itself: that class is a subclassed ``keras.Model``
    whose ``get_config`` nests the backbone, so the exported SavedModel reloads as Keras only
    through keras-cv's registry and the whole network is one layer the optimizer's Keras
    rewrites (QAT, pruning, int8 repair) cannot clone through; its 8x and 4x upsamplings
    are also fixed to P2/P5. Its building block, keras-cv's ``SpatialPyramidPooling``
    (the ASPP), is used as is."""
    import keras_cv

    seg = config.segmentation
    pixels = _pixels(size)
    encoder = backbones.multiscale_features(config.model, (4, 8, 16, 32), name=backbones.BACKBONE_LAYER_NAME)
    features = encoder(pixels)
    low, high = features[0], features[-1]
    aspp = keras_cv.layers.SpatialPyramidPooling(
        dilation_rates=[int(r) for r in seg.aspp_dilation_rates], num_channels=seg.head_channels,
        name="aspp")(high)
    x = layers.UpSampling2D(8, interpolation="bilinear", name="encoder_output_upsampling")(aspp)
    projected = _conv_bn_relu(low, min(48, seg.head_channels), "low_level_feature", kernel=1)
    x = layers.Concatenate(name="decoder_concat")([x, projected])
    x = _conv_bn_relu(x, seg.head_channels, "segmentation_head")
    x = layers.UpSampling2D(4, interpolation="bilinear", name="head_upsampling")(x)
    return tf.keras.Model(pixels, _classifier(x, num_classes), name="deeplabv3plus"), encoder.weights_loaded


# --- SegNet ---------------------------------------------------------------------------------
@tf.keras.utils.register_keras_serializable(package="visionpipe")
class PoolSwitches(layers.Layer):
    """SegNet's pooling indices as a mask: 1 where a 2x2 window's maximum sat in the input,
    0 elsewhere (``x == nearest_upsample(max_pool(x))``). Unpooling multiplies the nearest-
    upsampled decoder map by it, which puts each value back at its maximum's position, as
    ``tf.nn.max_pool_with_argmax`` + scatter would. Not the argmax op itself: TFLite has no
    builtin for ``MaxPoolWithArgmax`` (the int8 file would need a custom op), while this is
    MAX_POOL_2D, RESIZE_NEAREST_NEIGHBOR, EQUAL and CAST. On exact ties within a window every
    tied position is kept (argmax keeps one)."""

    def call(self, inputs):
        pooled = tf.nn.max_pool2d(inputs, 2, 2, "VALID")
        shape = tf.shape(inputs)
        restored = tf.image.resize(pooled, shape[1:3], method="nearest")
        return tf.cast(tf.equal(inputs, restored), inputs.dtype)


def segnet(config, num_classes: int, size) -> Tuple[tf.keras.Model, str]:
    seg = config.segmentation
    pixels = _pixels(size)
    encoder_in = tf.keras.Input((*size, 3), name="normalized_pixels")
    x, skips = encoder_in, []
    for level in range(seg.depth):
        x = _double_conv(x, seg.width * 2 ** level, f"enc{level}")
        skips.append(PoolSwitches(name=f"enc{level}_switches")(x))
        x = layers.MaxPooling2D(2, name=f"enc{level}_pool")(x)
    encoder = tf.keras.Model(encoder_in, [x, *skips], name=backbones.BACKBONE_LAYER_NAME)
    x, *switches = encoder(backbones.input_normalization("small_cnn")(pixels))
    for level in range(seg.depth - 1, -1, -1):
        x = layers.UpSampling2D(2, interpolation="nearest", name=f"dec{level}_up")(x)
        x = _conv_bn_relu(x, seg.width * 2 ** level, f"dec{level}_match", kernel=1)
        x = layers.Multiply(name=f"dec{level}_unpool")([x, switches[level]])
        x = _double_conv(x, seg.width * 2 ** max(level - 1, 0), f"dec{level}")
    return tf.keras.Model(pixels, _classifier(x, num_classes), name="segnet"), ""


BUILDERS = {"unet": unet, "fcn": fcn, "deeplabv3plus": deeplabv3plus, "segnet": segnet}


def build(config, num_classes: int, fixed_size: bool = False) -> Tuple[tf.keras.Model, str]:
    """(model, what was loaded as pretrained weights) for ``segmentation.architecture``.

    With ``segmentation.train_crop`` the input's height and width are left open (the model
    trains on crops and serves at ``model.image_size``), unless ``fixed_size``: the same
    weights at ``model.image_size``, for TFLite, which needs static shapes."""
    any_size = config.segmentation.train_crop and not fixed_size
    size = (None, None) if any_size else config.model.hw
    return BUILDERS[config.segmentation.architecture](config, num_classes, size)
