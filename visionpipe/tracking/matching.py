"""Costs and assignment: IoU, cosine appearance distance, the Hungarian assignment."""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
from scipy.optimize import linear_sum_assignment


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every ``xyxy`` box of ``a`` (N, 4) with every box of ``b`` (M, 4): (N, M)."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if not len(a) or not len(b):
        return np.zeros((len(a), len(b)))
    x1 = np.maximum(a[:, None, 0], b[None, :, 0])
    y1 = np.maximum(a[:, None, 1], b[None, :, 1])
    x2 = np.minimum(a[:, None, 2], b[None, :, 2])
    y2 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x2 - x1, 0, None) * np.clip(y2 - y1, 0, None)
    area_a = np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
    area_b = np.clip(b[:, 2] - b[:, 0], 0, None) * np.clip(b[:, 3] - b[:, 1], 0, None)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-12), 0.0)


def cosine_distance(gallery: np.ndarray, queries: np.ndarray) -> np.ndarray:
    """Smallest ``1 - cos`` between any gallery row and each query row: (M,)."""
    gallery = normalise(gallery)
    queries = normalise(queries)
    if not len(gallery):
        return np.ones(len(queries))
    return np.min(1.0 - gallery @ queries.T, axis=0)


def normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit L2 norm (a 1-D vector becomes one row; zero rows stay zero)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def assign(cost: np.ndarray, max_cost: float) -> Tuple[List[Tuple[int, int]], List[int], List[int]]:
    """Minimum-cost matching (``linear_sum_assignment``) keeping pairs with cost <= max_cost.

    Returns (matches as (row, col), unmatched rows, unmatched cols)."""
    rows, cols = cost.shape
    if rows == 0 or cols == 0:
        return [], list(range(rows)), list(range(cols))
    # pairs over the threshold cost more than any admissible pair, so they are never preferred
    bounded = np.where(cost > max_cost, max_cost + 1e5, cost)
    r, c = linear_sum_assignment(bounded)
    matches = [(int(i), int(j)) for i, j in zip(r, c) if cost[i, j] <= max_cost]
    matched_r = {i for i, _ in matches}
    matched_c = {j for _, j in matches}
    return (matches, [i for i in range(rows) if i not in matched_r],
            [j for j in range(cols) if j not in matched_c])
