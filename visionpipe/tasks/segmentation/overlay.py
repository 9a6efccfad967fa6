"""Colour overlays of class maps (``visionpipe predict --output-dir``, ``augment-preview``)."""
from __future__ import annotations

import numpy as np


def palette(num: int = 256) -> np.ndarray:
    """uint8 ``[num, 3]``: id 0 black, then well-separated colours (Pascal VOC's bit trick)."""
    colours = np.zeros((num, 3), np.uint8)
    for i in range(num):
        c, r, g, b = i, 0, 0, 0
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def overlay(image: np.ndarray, ids: np.ndarray, alpha: float = 0.5, ignore_index: int = 255) -> np.ndarray:
    """uint8 RGB ``image`` blended with the colours of ``ids`` (same height and width);
    pixels of ``ignore_index`` are left as they are."""
    image = np.clip(np.asarray(image), 0, 255).astype(np.float32)
    ids = np.asarray(ids).astype(np.int64)
    if image.shape[:2] != ids.shape:
        raise ValueError(f"image {image.shape[:2]} and class map {ids.shape} differ in size")
    colours = palette()[np.clip(ids, 0, 255)].astype(np.float32)
    blended = (1 - alpha) * image + alpha * colours
    keep = (ids == ignore_index) | (ids < 0)
    blended[keep] = image[keep]
    return np.clip(blended, 0, 255).astype(np.uint8)
