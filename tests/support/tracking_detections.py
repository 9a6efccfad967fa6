"""Detections derived from generated ground truth: what a decent detector would report."""
from __future__ import annotations

import numpy as np

#: a detector misses objects less visible than this
MIN_VISIBLE = 0.2


def detections_from_frames(frames, seed: int = 0, drop: float = 0.1, noise_px: float = 1.0):
    """(MOT detection rows, MOT ground-truth rows) of rendered frames: each visible object's
    whole box with Gaussian corner noise, a score that falls with occlusion (0.3 + 0.6 x the
    visible fraction, so half-hidden objects are ByteTrack's low-score boxes), objects under
    MIN_VISIBLE missed, and ``drop`` of the rest missed at random (dropped frames)."""
    rng = np.random.default_rng(seed)
    det, gt = [], []
    for frame in frames:
        number = frame.index + 1
        for obj in frame.scene.objects:
            x1, y1, x2, y2 = obj.full_bbox
            gt.append([number, obj.track_id, x1, y1, x2 - x1, y2 - y1, 1, -1, -1, -1])
            if obj.visible_fraction < MIN_VISIBLE or rng.random() < drop:
                continue
            b = np.array(obj.full_bbox, float) + rng.normal(0, noise_px, 4)
            det.append([number, -1, b[0], b[1], b[2] - b[0], b[3] - b[1],
                        0.3 + 0.6 * obj.visible_fraction, -1, -1, -1])
    return np.array(det, float).reshape(-1, 10), np.array(gt, float).reshape(-1, 10)
