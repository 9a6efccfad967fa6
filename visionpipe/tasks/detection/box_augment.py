"""Box-aware augmentation: the model kit's augmentation builder in box mode
(``visionpipe.models.augment``, which maps ``augment.*`` to keras-cv layers), plus what only
detection needs: ``detection.mosaic`` first, and dropping the boxes augmentation cut down.

A batch is ``images`` float32 ``[B, h, w, 3]`` in [0, 255] and keras-cv dense boxes
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
    """``augment.build_augmenter(config.augment, image_size, mode="boxes")`` (+ Mosaic).

    Draws are stateless, from the seed each call gets (see ``augment.SeededLayer``): the same
    batch and seed always give the same output, whatever the parallelism of the tf.data map."""

    def __init__(self, augment_config, image_size, mosaic: bool = False,
                 min_box_pixels: float = 2.0, seed: Optional[int] = None):
        from visionpipe.models import augment, preprocessing

        self.image_size = preprocessing.hw(image_size)
        self.min_box_pixels = float(min_box_pixels)
        self.seed = augment_config.seed if seed is None else seed
        # Mosaic composes four images and their labels, so it runs first and the box count is
        # taken after it; the boxes a later layer pushes out of the image are then all counted.
        self.augmenter = augment.build_augmenter(augment_config, self.image_size, augment.BOXES,
                                                 mosaic=mosaic, always=True)
        self.layers = [step.layer for step in self.augmenter.steps]
        self._mosaic = self.layers[0] if mosaic else None
        self.boxes_in = tf.Variable(0, dtype=tf.int64, trainable=False, name="boxes_in")
        self.boxes_dropped = tf.Variable(0, dtype=tf.int64, trainable=False, name="boxes_dropped")

    @property
    def layer_names(self) -> List[str]:
        return self.augmenter.layer_names

    def __call__(self, images: tf.Tensor, targets: Dict[str, tf.Tensor], seed=None):
        """``seed``: the batch's stateless seed (int64 ``[2]`` or an int); default ``self.seed``."""
        classes = tf.cast(targets["classes"], tf.float32)
        data = {"images": images, "bounding_boxes": {"boxes": tf.cast(targets["boxes"], tf.float32),
                                                     "classes": classes}}
        counted = {"valid_before": tf.math.count_nonzero(classes >= 0)}

        def after_mosaic(index, layer, data):
            if layer is self._mosaic:
                counted["valid_before"] = tf.math.count_nonzero(data["bounding_boxes"]["classes"] >= 0)

        data = self.augmenter.apply(data, self.seed if seed is None else seed, on_layer=after_mosaic)
        boxes, classes = self._drop_slivers(data["bounding_boxes"])
        valid_before = counted["valid_before"]
        self.boxes_in.assign_add(valid_before)
        self.boxes_dropped.assign_add(valid_before - tf.math.count_nonzero(classes >= 0))
        return data["images"], {"boxes": boxes, "classes": classes}

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
