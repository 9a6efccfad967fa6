"""The one preprocessing function: training, evaluation, every serving signature and the
TFLite runtime call these, so the model always sees the same input for the same image.

The model input is float32 pixels in [0, 255], resized (stretched, no crop or pad) to
``model.image_size``: one integer for a square or ``(height, width)``, keras-hub's order.
The scaling to the network's range happens in the model's first layer
(``normalization_layer``), so it is part of every export, TFLite included, and TFLite
metadata declares mean 0 / std 1.

Targets follow the image through the same resize (``preprocess_example``): boxes, kept
normalised in the Examples, become pixel ``yxyx`` of the model input (``scale_boxes``);
semantic masks of class ids are resized nearest-neighbour, so no two ids are ever blended
into a third (``resize_mask``); a transcription passes through unchanged.
"""
import operator
from typing import Dict, Optional, Tuple, Union

import visionpipe  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
import tensorflow as tf

from visionpipe.core.config import image_hw

INPUT_MEAN = 127.5
INPUT_STD = 127.5

Size = Union[int, Tuple[int, int]]


def hw(image_size: Size) -> Tuple[int, int]:
    """``(height, width)`` of an image size given as one integer (square) or a pair."""
    try:
        if isinstance(image_size, (list, tuple)):
            image_size = tuple(operator.index(v) for v in image_size)
        else:
            image_size = operator.index(image_size)
    except TypeError:
        pass  # image_hw names what it got
    return image_hw(image_size, "image_size")


def decode_image(encoded: tf.Tensor) -> tf.Tensor:
    """Encoded bytes (JPEG/PNG/GIF/BMP) -> uint8 [H, W, 3]."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def resize_image(image: tf.Tensor, image_size: Size) -> tf.Tensor:
    """uint8 or float [H, W, 3] -> float32 [h, w, 3] in [0, 255] (bilinear, no antialias)."""
    image = tf.image.resize(tf.cast(image, tf.float32), list(hw(image_size)),
                            method="bilinear", antialias=False)
    return tf.clip_by_value(image, 0.0, 255.0)


def preprocess_image(encoded: tf.Tensor, image_size: Size) -> tf.Tensor:
    """Encoded bytes of one image -> float32 [h, w, 3] model input."""
    return resize_image(decode_image(encoded), image_size)


def preprocess_batch(encoded: tf.Tensor, image_size: Size) -> tf.Tensor:
    """A batch of encoded images (any sizes) -> float32 [N, h, w, 3]."""
    height, width = hw(image_size)
    return tf.map_fn(lambda e: preprocess_image(e, (height, width)), encoded,
                     fn_output_signature=tf.TensorSpec([height, width, 3], tf.float32))


# --- targets ------------------------------------------------------------------------------
def decode_mask(encoded: tf.Tensor) -> tf.Tensor:
    """A PNG of class ids (``image/segmentation/mask``, one channel) -> uint8 [H, W, 1]."""
    mask = tf.io.decode_png(encoded, channels=1)
    mask.set_shape([None, None, 1])
    return mask


def resize_mask(mask: tf.Tensor, image_size: Size) -> tf.Tensor:
    """A mask of class ids, [H, W] or [H, W, 1] (or a batch [N, H, W, 1]), resized
    nearest-neighbour to ``image_size``: every output pixel is the id of one input pixel,
    never a blend; the dtype is kept."""
    mask = tf.convert_to_tensor(mask)
    squeeze = mask.shape.rank == 2
    if squeeze:
        mask = mask[..., None]
    resized = tf.image.resize(mask, list(hw(image_size)), method="nearest", antialias=False)
    resized = tf.cast(resized, mask.dtype)
    return resized[..., 0] if squeeze else resized


def scale_boxes(boxes: tf.Tensor, image_size: Size) -> tf.Tensor:
    """Normalised ``yxyx`` boxes ``[..., 4]`` (the Examples' convention) -> pixel ``yxyx``
    of the model input: y by the height, x by the width (the resize stretches each axis)."""
    height, width = hw(image_size)
    scale = tf.constant([height, width, height, width], tf.float32)
    return tf.cast(boxes, tf.float32) * scale


def normalize_boxes(boxes: tf.Tensor, image_size: Size) -> tf.Tensor:
    """The inverse of ``scale_boxes``: pixel ``yxyx`` of the model input -> normalised."""
    height, width = hw(image_size)
    return tf.cast(boxes, tf.float32) / tf.constant([height, width, height, width], tf.float32)


def preprocess_example(encoded: tf.Tensor, image_size: Size, *, boxes: Optional[tf.Tensor] = None,
                       mask: Optional[tf.Tensor] = None,
                       text: Optional[tf.Tensor] = None) -> Dict[str, tf.Tensor]:
    """One image and its targets through the same resize.

    ``boxes``: normalised ``yxyx`` ``[N, 4]`` -> pixel ``yxyx`` of the model input;
    ``mask``: encoded PNG of class ids (or a decoded [H, W(, 1)] mask) -> [h, w, 1] int32,
    nearest-neighbour; ``text``: returned unchanged. Returns ``images`` (float32 [h, w, 3]),
    ``image_shape`` (the decoded [H, W]) and the targets given, under ``boxes``,
    ``segmentation_masks`` (keras-cv's name) and ``text``."""
    image = decode_image(encoded)
    out = {"images": resize_image(image, image_size), "image_shape": tf.shape(image)[:2]}
    if boxes is not None:
        out["boxes"] = scale_boxes(tf.reshape(boxes, [-1, 4]), image_size)
    if mask is not None:
        mask = tf.convert_to_tensor(mask)
        decoded = decode_mask(mask) if mask.dtype == tf.string else mask
        out["segmentation_masks"] = tf.cast(resize_mask(decoded, image_size), tf.int32)
        if out["segmentation_masks"].shape.rank == 2:
            out["segmentation_masks"] = out["segmentation_masks"][..., None]
    if text is not None:
        out["text"] = text
    return out


def normalization_layer(name: str = "normalize") -> tf.keras.layers.Layer:
    """[0, 255] -> [-1, 1]; the first layer of every VisionPipe model."""
    return tf.keras.layers.Rescaling(1.0 / INPUT_STD, offset=-INPUT_MEAN / INPUT_STD, name=name)
