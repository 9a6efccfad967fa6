"""Box-aware augmentation: keras-cv layers in bounding-box mode move boxes with the image.

A batch is ``images`` float32 ``[B, S, S, 3]`` in [0, 255] and keras-cv dense boxes
``{"boxes": [B, N, 4] pixel yxyx, "classes": [B, N]}`` with class -1 for padding. The layers
clip boxes to the image; boxes that leave it, or keep less than ``min_box_pixels`` on a side,
are dropped (class -1) and counted, so a run reports how many labels augmentation removed.
"""
from __future__ import annotations

from typing import Dict, List, Optional

import visionpipe  # noqa: F401
import tensorflow as tf

BOX_FORMAT = "yxyx"
VALUE_RANGE = (0.0, 255.0)


class BoxAugmenter:
    """Builds the keras-cv pipeline from ``config.augment`` (+ ``config.detection.mosaic``).

    Draws are stateless, from the seed each call gets (see ``augment.SeededLayer``): the same
    batch and seed always give the same output, whatever the parallelism of the tf.data map."""

    def __init__(self, augment_config, image_size, mosaic: bool = False,
                 min_box_pixels: float = 2.0, seed: Optional[int] = None):
        from visionpipe.models import augment, preprocessing

        self.image_size = preprocessing.hw(image_size)
        self.min_box_pixels = float(min_box_pixels)
        self.seed = augment_config.seed if seed is None else seed
        layers = _build_layers(augment_config, self.image_size, mosaic)
        self.layers = augment.seeded_layers(layers)
        self._mosaic = self.layers[0] if mosaic else None
        self.boxes_in = tf.Variable(0, dtype=tf.int64, trainable=False, name="boxes_in")
        self.boxes_dropped = tf.Variable(0, dtype=tf.int64, trainable=False, name="boxes_dropped")

    @property
    def layer_names(self) -> List[str]:
        return [layer.name for layer in self.layers]

    def __call__(self, images: tf.Tensor, targets: Dict[str, tf.Tensor], seed=None):
        """``seed``: the batch's stateless seed (int64 ``[2]`` or an int); default ``self.seed``."""
        from visionpipe.models import augment

        seed = augment.as_seed(self.seed if seed is None else seed)
        boxes = tf.cast(targets["boxes"], tf.float32)
        classes = tf.cast(targets["classes"], tf.float32)
        data = {"images": images, "bounding_boxes": {"boxes": boxes, "classes": classes}}
        valid_before = tf.math.count_nonzero(classes >= 0)
        for index, layer in enumerate(self.layers):
            data = layer(data, augment.layer_seed(seed, index))
            data["bounding_boxes"] = _dense(data["bounding_boxes"])
            if layer is self._mosaic:
                valid_before = tf.math.count_nonzero(data["bounding_boxes"]["classes"] >= 0)
        images = tf.ensure_shape(data["images"], [None, *self.image_size, 3])
        boxes, classes = self._drop_slivers(data["bounding_boxes"])
        self.boxes_in.assign_add(valid_before)
        self.boxes_dropped.assign_add(valid_before - tf.math.count_nonzero(classes >= 0))
        return images, {"boxes": boxes, "classes": classes}

    def _drop_slivers(self, bounding_boxes):
        height, width = (float(v) for v in self.image_size)
        boxes = tf.clip_by_value(bounding_boxes["boxes"], 0.0,
                                 tf.constant([height, width, height, width], tf.float32))
        classes = bounding_boxes["classes"]
        sides = tf.stack([boxes[..., 2] - boxes[..., 0], boxes[..., 3] - boxes[..., 1]], axis=-1)
        keep = tf.logical_and(classes >= 0, tf.reduce_min(sides, axis=-1) >= self.min_box_pixels)
        classes = tf.where(keep, classes, -tf.ones_like(classes))
        boxes = tf.where(keep[..., None], boxes, -tf.ones_like(boxes))
        return boxes, classes

    def report(self) -> Dict[str, int]:
        """Boxes seen and dropped since construction (or the last ``reset``)."""
        return {"boxes_in": int(self.boxes_in.numpy()), "boxes_dropped": int(self.boxes_dropped.numpy())}

    def reset(self) -> None:
        self.boxes_in.assign(0)
        self.boxes_dropped.assign(0)


def _dense(bounding_boxes):
    import keras_cv

    if isinstance(bounding_boxes["boxes"], tf.RaggedTensor):
        bounding_boxes = keras_cv.bounding_box.to_dense(bounding_boxes)
    return {"boxes": tf.cast(bounding_boxes["boxes"], tf.float32),
            "classes": tf.cast(bounding_boxes["classes"], tf.float32)}


def _build_layers(cfg, image_size, mosaic: bool) -> list:
    import keras_cv

    cv = keras_cv.layers
    # No seeds here: augment.SeededLayer gives every layer stateless draws from the batch seed.
    # Mosaic composes four images and their labels, so it runs first and the box count is
    # taken after it; the boxes a later layer pushes out of the image are then all counted.
    layers = [cv.Mosaic(bounding_box_format=BOX_FORMAT)] if mosaic else []
    if cfg.horizontal_flip or cfg.vertical_flip:
        mode = ("horizontal_and_vertical" if cfg.horizontal_flip and cfg.vertical_flip
                else "horizontal" if cfg.horizontal_flip else "vertical")
        layers.append(cv.RandomFlip(mode=mode, bounding_box_format=BOX_FORMAT))
    jitter = max(cfg.zoom, cfg.random_crop)
    if jitter > 0:
        # Scale jitter then a random crop back to S x S: a random resized crop that keeps
        # boxes (JitteredResize pads when the scaled image is smaller than the target).
        layers.append(cv.JitteredResize(
            target_size=tuple(image_size), scale_factor=(1.0 - jitter, 1.0 + jitter),
            bounding_box_format=BOX_FORMAT))
    if cfg.translation > 0:
        layers.append(cv.RandomTranslation(
            height_factor=cfg.translation, width_factor=cfg.translation, fill_mode="constant",
            bounding_box_format=BOX_FORMAT))
    # Photometric layers leave boxes untouched.
    if cfg.brightness > 0:
        layers.append(cv.RandomBrightness(factor=cfg.brightness, value_range=VALUE_RANGE))
    if cfg.contrast > 0:
        layers.append(cv.RandomContrast(value_range=VALUE_RANGE, factor=cfg.contrast))
    if cfg.saturation > 0:
        # keras-cv's saturation factor 0.5 is the identity.
        layers.append(cv.RandomSaturation(factor=(0.5 - cfg.saturation / 2, 0.5 + cfg.saturation / 2)))
    if cfg.hue > 0:
        layers.append(cv.RandomHue(factor=cfg.hue, value_range=VALUE_RANGE))
    if cfg.cutout > 0:
        layers.append(cv.RandomCutout(height_factor=(0.0, cfg.cutout), width_factor=(0.0, cfg.cutout),
                                      fill_mode="constant", fill_value=127.5))
    return layers
