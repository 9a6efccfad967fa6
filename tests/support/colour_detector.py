"""A real (untrained) detector SavedModel for tracking tests: one colour per class.

It decodes each PNG it is sent and, for every class colour, boxes the pixels near that colour
(the shapes of a generated occlusion sequence are flat colours), scoring a box by how much of
the shape's first-frame area is visible. The raw boxes go through the detection task's own
class-aware NMS and signature outputs, so the export answers as a pushed detector does."""
from __future__ import annotations

from pathlib import Path

import numpy as np


def class_colours(frame) -> np.ndarray:
    """(classes, 3) mean rendered RGB of each object of a frame, by class id; and its areas."""
    colours, areas = {}, {}
    for obj in frame.scene.objects:
        colours[obj.class_id] = frame.image[obj.mask].reshape(-1, 3).mean(axis=0)
        areas[obj.class_id] = obj.full_area
    ids = sorted(colours)
    return np.array([colours[i] for i in ids]), np.array([areas[i] for i in ids], float)


def export_colour_detector(out_dir, first_frame, class_names, tolerance: float = 40.0) -> Path:
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.core.config import PipelineConfig
    from visionpipe.tasks.detection.task import DetectionTask

    size = first_frame.image.shape[0]
    colours, areas = class_colours(first_frame)
    config = PipelineConfig(task="detection")
    config.model.image_size = size
    config.detection.score_threshold = 0.05
    task = DetectionTask(config.validate(), list(class_names))

    class ColourDetector(tf.Module):
        def __init__(self):
            super().__init__()
            self.colours = tf.constant(colours, tf.float32)
            self.areas = tf.constant(areas, tf.float32)

        def one(self, encoded):
            image = tf.cast(tf.io.decode_png(encoded, channels=3), tf.float32)
            near = tf.reduce_sum(tf.abs(image[None] - self.colours[:, None, None, :]), -1) < tolerance
            rows, cols = tf.reduce_any(near, 2), tf.reduce_any(near, 1)  # (C, H), (C, W)
            idx_h = tf.range(tf.shape(rows)[1], dtype=tf.float32)[None]
            idx_w = tf.range(tf.shape(cols)[1], dtype=tf.float32)[None]
            big = 1e6
            ymin = tf.reduce_min(tf.where(rows, idx_h, big), 1)
            ymax = tf.reduce_max(tf.where(rows, idx_h, -1.0), 1) + 1
            xmin = tf.reduce_min(tf.where(cols, idx_w, big), 1)
            xmax = tf.reduce_max(tf.where(cols, idx_w, -1.0), 1) + 1
            count = tf.reduce_sum(tf.cast(near, tf.float32), [1, 2])
            found = count >= 8
            boxes = tf.where(found[:, None], tf.stack([ymin, xmin, ymax, xmax], 1), 0.0)
            score = tf.where(found, 0.3 + 0.6 * tf.minimum(count / self.areas, 1.0), 0.0)
            scores = tf.linalg.diag(score)  # box c scores only class c
            return boxes, scores

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serving_default(self, images):
            boxes, scores = tf.map_fn(self.one, images,
                                      fn_output_signature=(tf.float32, tf.float32))
            return task.postprocess(boxes, scores)

    module = ColourDetector()
    out = Path(out_dir)
    tf.saved_model.save(module, str(out), signatures={"serving_default": module.serving_default})
    return out
