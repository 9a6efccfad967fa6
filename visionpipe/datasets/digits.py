"""scikit-learn's bundled handwritten digits (1,797 real 8x8 scans, read from the CSV
inside the sklearn package, never downloaded) as a class-folder tree of PNGs."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional, Sequence, Tuple

import numpy as np
from PIL import Image

DIGIT_CLASSES: Tuple[str, ...] = tuple(str(d) for d in range(10))
_MAX_INTENSITY = 16  # load_digits stores ink as 0..16


def _balanced_order(targets: np.ndarray, class_ids: Sequence[int], seed: int) -> List[int]:
    """Row indices, shuffled within each class, interleaved class by class, so every
    prefix is balanced (counts differ by at most one while classes have rows left)."""
    rng = np.random.default_rng(int(seed))
    per_class = [rng.permutation(np.flatnonzero(targets == c)).tolist() for c in class_ids]
    order = []
    for rank in range(max(len(rows) for rows in per_class)):
        order.extend(rows[rank] for rows in per_class if rank < len(rows))
    return order


def write_digits_folder(out_dir, num_images: int = 240, image_size: int = 32, seed: int = 7,
                        classes: Optional[Sequence[str]] = None) -> List[Tuple[str, str]]:
    """Write ``<out_dir>/<digit>/<row>.png`` (grayscale, upscaled nearest-neighbour).

    ``row`` is the digit's row in scikit-learn's CSV, so every file traces back to its
    source. Returns ``(path, class_name)`` in a seeded, class-balanced order.
    """
    from sklearn.datasets import load_digits

    classes = tuple(classes) if classes else DIGIT_CLASSES
    unknown = [name for name in classes if name not in DIGIT_CLASSES]
    if unknown:
        raise ValueError(f"unknown digit classes {unknown}; choose from {list(DIGIT_CLASSES)}")
    if image_size < 8 or image_size % 8:
        raise ValueError(f"image_size must be a multiple of 8 (digits are 8x8), got {image_size}")
    digits = load_digits()
    order = _balanced_order(digits.target, [int(c) for c in classes], seed)
    if not 1 <= num_images <= len(order):
        raise ValueError(f"num_images must be in [1, {len(order)}] for digits {list(classes)}, "
                         f"got {num_images}")
    factor = image_size // 8
    out_dir = Path(out_dir)
    written = []
    for row in order[:num_images]:
        ink = np.round(digits.images[row] * (255.0 / _MAX_INTENSITY)).astype(np.uint8)
        # Dark ink on white paper, as the digits were scanned.
        pixels = np.kron(255 - ink, np.ones((factor, factor), np.uint8))
        name = str(digits.target[row])
        path = out_dir / name / f"{row:04d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(pixels).save(path, format="PNG")
        written.append((str(path), name))
    return written
