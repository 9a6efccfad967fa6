"""Elastic deformation of a batch of images and their masks together (``segmentation.elastic_*``).

Each image gets its own smooth displacement field: Gaussian displacements (std
``displacement`` px, per axis) on a ``grid`` x ``grid`` lattice of control points, upsampled
bicubic to the image size (the U-Net paper's augmentation: 10 px on 3 x 3). Output pixel
``(r, c)`` reads the input at ``(r + dy, c + dx)``, reflected at the border (nothing pads):
the image bilinear, the mask at the nearest pixel of the same point, so mask ids are never
blended and the mask moves with the image. Draws are stateless from the batch's seed.
"""
from __future__ import annotations

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import augment

_SALT = 0xE1A5


def _reflect(coords: tf.Tensor, size: tf.Tensor) -> tf.Tensor:
    """Coordinates folded into ``[0, size - 1]`` by reflection at the edges."""
    last = tf.cast(size - 1, coords.dtype)
    period = tf.maximum(2.0 * last, 1.0)
    folded = tf.math.floormod(coords, period)
    return tf.minimum(tf.where(folded > last, period - folded, folded), last)


def displacement_fields(batch, height, width, displacement: float, grid: int, seed) -> tf.Tensor:
    """float32 ``[B, H, W, 2]`` (dy, dx) in pixels, smooth, one field per image."""
    seed = tf.random.experimental.stateless_fold_in(augment.as_seed(seed), _SALT)
    coarse = tf.random.stateless_normal([batch, grid, grid, 2], seed) * displacement
    return tf.image.resize(coarse, tf.stack([height, width]), method="bicubic")


def elastic_deform(images: tf.Tensor, masks: tf.Tensor, displacement: float, grid: int, seed):
    """``images`` ``[B, H, W, C]`` float and ``masks`` ``[B, H, W(, 1)]`` int, warped by the
    same field; shapes and dtypes kept."""
    shape = tf.shape(images)
    batch, height, width = shape[0], shape[1], shape[2]
    field = displacement_fields(batch, height, width, displacement, grid, seed)
    rows = tf.cast(tf.range(height), tf.float32)[None, :, None] + field[..., 0]
    cols = tf.cast(tf.range(width), tf.float32)[None, None, :] + field[..., 1]
    rows, cols = _reflect(rows, height), _reflect(cols, width)
    index = tf.broadcast_to(tf.range(batch)[:, None, None], tf.shape(rows))

    def at(r, c):
        return tf.stack([index, r, c], axis=-1)

    r0, c0 = tf.floor(rows), tf.floor(cols)
    fr, fc = (rows - r0)[..., None], (cols - c0)[..., None]
    r0, c0 = tf.cast(r0, tf.int32), tf.cast(c0, tf.int32)
    r1, c1 = tf.minimum(r0 + 1, height - 1), tf.minimum(c0 + 1, width - 1)
    pixels = tf.cast(images, tf.float32)
    top = tf.gather_nd(pixels, at(r0, c0)) * (1 - fc) + tf.gather_nd(pixels, at(r0, c1)) * fc
    bottom = tf.gather_nd(pixels, at(r1, c0)) * (1 - fc) + tf.gather_nd(pixels, at(r1, c1)) * fc
    warped = tf.cast(top * (1 - fr) + bottom * fr, images.dtype)
    nearest = at(tf.cast(tf.round(rows), tf.int32), tf.cast(tf.round(cols), tf.int32))
    warped_masks = tf.gather_nd(masks, nearest)
    return tf.ensure_shape(warped, images.shape), tf.ensure_shape(warped_masks, masks.shape)
