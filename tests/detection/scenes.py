"""Generated detection scenes whose object positions are known exactly: solid rectangles,
one distinct colour per object, on a black background."""
from __future__ import annotations

import io
from typing import List, Tuple

import numpy as np

COLOURS = [(255, 0, 0), (0, 255, 0), (0, 0, 255), (255, 255, 0), (0, 255, 255), (255, 0, 255)]


def scene(size: int, boxes_px: List[Tuple[int, int, int, int]]) -> np.ndarray:
    """uint8 [size, size, 3]; object i fills pixel rows ymin:ymax, cols xmin:xmax in COLOURS[i]."""
    image = np.zeros((size, size, 3), np.uint8)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes_px):
        image[ymin:ymax, xmin:xmax] = COLOURS[i]
    return image


def random_scene(rng: np.random.Generator, size: int, num_classes: int, max_objects: int = 3):
    """A scene of 1..max_objects non-overlapping rectangles; class = colour index % num_classes.

    Returns (image, normalised yxyx boxes, class ids)."""
    boxes, classes = [], []
    occupied = np.zeros((size, size), bool)
    for _ in range(rng.integers(1, max_objects + 1) * 4):
        if len(boxes) == max_objects:
            break
        h, w = rng.integers(size // 6, size // 2, size=2)
        y, x = rng.integers(0, size - h), rng.integers(0, size - w)
        if occupied[y:y + h, x:x + w].any():
            continue
        occupied[y:y + h, x:x + w] = True
        boxes.append((y, x, y + h, x + w))
        classes.append(len(classes) % num_classes)
    image = np.zeros((size, size, 3), np.uint8)
    for (ymin, xmin, ymax, xmax), c in zip(boxes, classes):
        image[ymin:ymax, xmin:xmax] = COLOURS[c]
    return image, np.asarray(boxes, np.float32) / size, np.asarray(classes, np.int64)


def png_bytes(image: np.ndarray) -> bytes:
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, format="PNG")
    return buffer.getvalue()


def detection_example(image: np.ndarray, boxes: np.ndarray, classes: np.ndarray, class_names) -> bytes:
    """A serialized tf.Example of the project's feature spec."""
    import tensorflow as tf

    from visionpipe.core import features

    def floats(v):
        return tf.train.Feature(float_list=tf.train.FloatList(value=[float(x) for x in v]))

    def ints(v):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=[int(x) for x in v]))

    def strings(v):
        return tf.train.Feature(bytes_list=tf.train.BytesList(value=list(v)))

    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    feature = {
        features.ENCODED: strings([png_bytes(image)]),
        features.FORMAT: strings([b"png"]),
        features.HEIGHT: ints([image.shape[0]]),
        features.WIDTH: ints([image.shape[1]]),
        # like ImageExampleGen: a detection image is labelled with its objects' classes
        features.LABEL: ints(sorted(set(int(c) for c in classes))),
        features.OBJECT_LABEL: ints(classes),
        features.OBJECT_TEXT: strings([class_names[c].encode() for c in classes]),
    }
    for index, key in enumerate(features.BBOX_KEYS):
        feature[key] = floats(boxes[:, index])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
