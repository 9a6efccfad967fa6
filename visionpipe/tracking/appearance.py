"""Appearance embeddings for DeepSORT: one vector per detection box of a frame.

- :class:`ColourHistogramEmbedder`: a fixed feature, no model (a joint RGB histogram of the
  box's central part, L2-normalised), for when no trained embedder is given.
- :class:`CropEmbedder`: any callable on a batch of crops, e.g. the embedding task's exported
  embedder or a detector's backbone, called on crops resized to its input size.
"""
from __future__ import annotations

from typing import Callable, Tuple

import numpy as np


def crop(image: np.ndarray, box: np.ndarray, shrink: float = 0.0) -> np.ndarray:
    """The pixels of ``box`` (xyxy, clipped to the image; at least one pixel), optionally
    shrunk by ``shrink`` of its size on each side to leave out the background at its edges."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = [float(v) for v in box]
    dx, dy = (x2 - x1) * shrink, (y2 - y1) * shrink
    x1, x2 = int(np.clip(np.floor(x1 + dx), 0, w - 1)), int(np.clip(np.ceil(x2 - dx), 1, w))
    y1, y2 = int(np.clip(np.floor(y1 + dy), 0, h - 1)), int(np.clip(np.ceil(y2 - dy), 1, h))
    return image[y1:max(y2, y1 + 1), x1:max(x2, x1 + 1)]


def resize_nearest(image: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    """``image`` resized to ``(height, width)`` by nearest neighbour (numpy only)."""
    h, w = image.shape[:2]
    rows = np.minimum((np.arange(size[0]) + 0.5) * h / size[0], h - 1).astype(int)
    cols = np.minimum((np.arange(size[1]) + 0.5) * w / size[1], w - 1).astype(int)
    return image[rows][:, cols]


class ColourHistogramEmbedder:
    """Joint RGB histogram (``bins`` per channel) of each box's centre, L2-normalised."""

    def __init__(self, bins: int = 8, shrink: float = 0.15):
        self.bins = int(bins)
        self.shrink = float(shrink)

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        image = np.asarray(image)
        if image.ndim != 3 or image.shape[2] < 3:
            raise ValueError(f"the colour histogram needs an HxWx3 frame, got shape {image.shape}")
        out = np.zeros((len(boxes), self.bins ** 3))
        for row, box in enumerate(boxes):
            pixels = crop(image[..., :3], box, self.shrink).reshape(-1, 3).astype(np.int64)
            q = pixels * self.bins // 256
            index = (q[:, 0] * self.bins + q[:, 1]) * self.bins + q[:, 2]
            hist = np.bincount(index, minlength=self.bins ** 3).astype(np.float64)
            out[row] = np.sqrt(hist / max(len(pixels), 1))  # Hellinger: cosine of sqrt-histograms
        return out


class CropEmbedder:
    """``fn(batch of crops (N, H, W, 3) float32 pixels in [0, 255]) -> (N, D)`` on each box's
    crop resized to ``size``: wraps an exported embedder or a backbone."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray], size: Tuple[int, int]):
        self.fn = fn
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, image: np.ndarray, boxes: np.ndarray) -> np.ndarray:
        if not len(boxes):
            return np.zeros((0, 1))
        batch = np.stack([resize_nearest(crop(np.asarray(image)[..., :3], box), self.size)
                          for box in boxes]).astype(np.float32)
        out = np.asarray(self.fn(batch), dtype=np.float64)
        return out.reshape(len(boxes), -1)
