"""Anchors: generation (keras-cv's AnchorGenerator) and fitting them to the training boxes.

Fitting clusters box shapes (width, height) with k-means on the IoU distance ``1 - IoU``
(YOLOv2's recipe: Euclidean distance would let large boxes dominate), then maps the clusters
onto what a RetinaNet anchor generator can express (one base size per pyramid level, shared
scales and aspect ratios). Both the raw clusters and that mapped ("adopted") set are scored
with the best-possible recall at an IoU threshold and the mean best IoU, so a user sees what
the configured anchors cost and what adopting the fitted ones buys. The fit is recommended
only when it does not lower the best-possible recall on the real anchor grid.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List, Sequence

import numpy as np

import visionpipe  # noqa: F401


def generate_anchors(image_size, sizes: Sequence[float], strides: Sequence[int],
                     scales: Sequence[float], aspect_ratios: Sequence[float],
                     clip: bool = True) -> np.ndarray:
    """All anchors of an image, pixel ``yxyx``, level by level, location-major.

    Per level ``i`` and location, the anchors are ``scales x aspect_ratios`` of base size
    ``sizes[i]`` (height ``size*scale/sqrt(r)``, width ``size*scale*sqrt(r)``), centred at
    ``(k + 0.5) * strides[i]``; the same order the RetinaNet heads predict in.
    ``image_size``: the model input's ``(height, width)``, or one integer (a square)."""
    from visionpipe.models.preprocessing import hw

    return np.concatenate(list(anchor_generator(sizes, strides, scales, aspect_ratios, clip)(
        image_shape=(*hw(image_size), 3)).values()), axis=0).astype(np.float32)


def anchor_generator(sizes, strides, scales, aspect_ratios, clip: bool = True,
                     bounding_box_format: str = "yxyx"):
    import keras_cv

    if len(sizes) != len(strides):
        raise ValueError(f"anchor sizes {list(sizes)} and strides {list(strides)} must pair up "
                         "(one size per pyramid level)")
    return keras_cv.layers.AnchorGenerator(
        bounding_box_format=bounding_box_format, sizes=[float(s) for s in sizes],
        scales=[float(s) for s in scales], aspect_ratios=[float(r) for r in aspect_ratios],
        strides=[int(s) for s in strides], clip_boxes=clip)


def anchor_shapes(sizes: Sequence[float], scales: Sequence[float],
                  aspect_ratios: Sequence[float]) -> np.ndarray:
    """The distinct anchor shapes ``[K, 2]`` (width, height) in pixels."""
    shapes = [(size * scale * np.sqrt(ratio), size * scale / np.sqrt(ratio))
              for size in sizes for scale in scales for ratio in aspect_ratios]
    return np.asarray(shapes, dtype=np.float64)


def shape_iou(boxes_wh: np.ndarray, anchors_wh: np.ndarray) -> np.ndarray:
    """IoU ``[N, K]`` of boxes and anchors placed on a common centre (shape match only)."""
    boxes_wh = np.asarray(boxes_wh, dtype=np.float64)[:, None, :]
    anchors_wh = np.asarray(anchors_wh, dtype=np.float64)[None, :, :]
    inter = np.prod(np.minimum(boxes_wh, anchors_wh), axis=-1)
    union = np.prod(boxes_wh, axis=-1) + np.prod(anchors_wh, axis=-1) - inter
    return inter / np.maximum(union, 1e-12)


@dataclasses.dataclass
class AnchorFit:
    """How well a set of anchor shapes covers the box shapes."""
    best_possible_recall: float  # fraction of boxes with some anchor at IoU >= threshold
    mean_best_iou: float
    num_anchors: int

    def as_dict(self) -> Dict[str, float]:
        return dataclasses.asdict(self)


def score_anchors(boxes_wh: np.ndarray, anchors_wh: np.ndarray, iou_threshold: float = 0.5) -> AnchorFit:
    best = shape_iou(boxes_wh, anchors_wh).max(axis=1)
    return AnchorFit(best_possible_recall=float(np.mean(best >= iou_threshold)),
                     mean_best_iou=float(np.mean(best)), num_anchors=len(anchors_wh))


def kmeans_iou(boxes_wh: np.ndarray, k: int, seed: int = 0, max_iterations: int = 300) -> np.ndarray:
    """k box shapes ``[k, 2]`` minimising the mean ``1 - IoU`` to the boxes, sorted by area.

    k-means++ seeding on the IoU distance, then Lloyd iterations with the median as the
    centre (robust to the long tail of box sizes)."""
    boxes_wh = np.asarray(boxes_wh, dtype=np.float64)
    if boxes_wh.ndim != 2 or boxes_wh.shape[1] != 2:
        raise ValueError(f"box shapes must be [N, 2] (width, height), got {boxes_wh.shape}")
    if np.any(boxes_wh <= 0):
        raise ValueError("box shapes must be positive; zero-area boxes belong in quarantine")
    if len(boxes_wh) < k:
        raise ValueError(f"cannot fit {k} anchors to {len(boxes_wh)} boxes")
    rng = np.random.default_rng(seed)
    centres = [boxes_wh[rng.integers(len(boxes_wh))]]
    for _ in range(1, k):
        distance = 1.0 - shape_iou(boxes_wh, np.asarray(centres)).max(axis=1)
        weights = distance ** 2
        total = weights.sum()
        pick = rng.choice(len(boxes_wh), p=weights / total) if total > 0 else rng.integers(len(boxes_wh))
        centres.append(boxes_wh[pick])
    centres = np.asarray(centres)
    assignment = None
    for _ in range(max_iterations):
        new_assignment = np.argmax(shape_iou(boxes_wh, centres), axis=1)
        if assignment is not None and np.array_equal(new_assignment, assignment):
            break
        assignment = new_assignment
        for cluster in range(k):
            members = boxes_wh[assignment == cluster]
            if len(members):
                centres[cluster] = np.median(members, axis=0)
    return centres[np.argsort(np.prod(centres, axis=1))]


def box_iou(boxes: np.ndarray, anchors: np.ndarray) -> np.ndarray:
    """IoU ``[N, K]`` of yxyx boxes and yxyx anchors at their real positions."""
    boxes = np.asarray(boxes, np.float32)[:, None, :]
    anchors = np.asarray(anchors, np.float32)[None, :, :]
    inter_h = np.clip(np.minimum(boxes[..., 2], anchors[..., 2]) - np.maximum(boxes[..., 0], anchors[..., 0]), 0, None)
    inter_w = np.clip(np.minimum(boxes[..., 3], anchors[..., 3]) - np.maximum(boxes[..., 1], anchors[..., 1]), 0, None)
    inter = inter_h * inter_w
    area_b = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    area_a = (anchors[..., 2] - anchors[..., 0]) * (anchors[..., 3] - anchors[..., 1])
    return inter / np.maximum(area_b + area_a - inter, 1e-9)


def score_anchor_grid(boxes_yxyx: np.ndarray, anchors_yxyx: np.ndarray, iou_threshold: float = 0.5,
                      chunk: int = 256) -> AnchorFit:
    """Best-possible recall on the real anchor grid: a box counts when some anchor at some
    location overlaps it at ``iou_threshold`` (what RetinaNet's matcher needs), unlike the
    shape-only score, which assumes an anchor centred on every box."""
    best = np.concatenate([box_iou(boxes_yxyx[i:i + chunk], anchors_yxyx).max(axis=1)
                           for i in range(0, len(boxes_yxyx), chunk)]) if len(boxes_yxyx) else np.zeros(0)
    return AnchorFit(best_possible_recall=float(np.mean(best >= iou_threshold)),
                     mean_best_iou=float(np.mean(best)), num_anchors=len(anchors_yxyx))


@dataclasses.dataclass
class AnchorConfigFit:
    """Fitted anchors mapped onto the generator's parameters (one base size per level)."""
    sizes: List[float]
    scales: List[float]
    aspect_ratios: List[float]
    clusters_wh: List[List[float]]


def fit_anchor_config(boxes_wh: np.ndarray, num_levels: int, scales: Sequence[float],
                      num_aspect_ratios: int, seed: int = 0) -> AnchorConfigFit:
    """Fit ``num_levels * len(scales) * num_aspect_ratios`` clusters and express them as
    per-level base sizes (geometric mean of each level's cluster sizes divided by the mean
    scale) and shared aspect ratios (k-means of the clusters' log width/height)."""
    scales = [float(s) for s in scales]
    k = num_levels * len(scales) * num_aspect_ratios
    clusters = kmeans_iou(boxes_wh, k, seed=seed)
    log_ratio = np.log(clusters[:, 0] / clusters[:, 1])
    ratio_centres = np.quantile(log_ratio, (np.arange(num_aspect_ratios) + 0.5) / num_aspect_ratios)
    for _ in range(100):
        labels = np.argmin(np.abs(log_ratio[:, None] - ratio_centres[None, :]), axis=1)
        updated = np.array([log_ratio[labels == j].mean() if np.any(labels == j) else ratio_centres[j]
                            for j in range(num_aspect_ratios)])
        if np.allclose(updated, ratio_centres):
            break
        ratio_centres = updated
    # Clusters come sorted by area: consecutive groups map to increasing pyramid levels.
    log_size = 0.5 * np.log(np.prod(clusters, axis=1))
    mean_log_scale = float(np.mean(np.log(scales)))
    sizes = [float(np.exp(group.mean() - mean_log_scale))
             for group in np.array_split(log_size, num_levels)]
    return AnchorConfigFit(sizes=[round(s, 2) for s in sizes], scales=scales,
                           aspect_ratios=sorted(round(float(np.exp(c)), 3) for c in ratio_centres),
                           clusters_wh=[[round(float(w), 2), round(float(h), 2)] for w, h in clusters])


def level_name(index: int, stride: int) -> str:
    """``P<k>`` for a stride of ``2**k`` (RetinaNet's P3..P7), else ``level <index>``."""
    k = int(round(np.log2(stride))) if stride > 0 else -1
    return f"P{k}" if k >= 0 and 2 ** k == stride else f"level {index}"


def smaller_than_stride(sizes: Sequence[float], strides: Sequence[int]) -> List[Dict[str, float]]:
    """The levels whose base anchor size is below their stride: neighbouring anchors of such
    a level do not overlap, so a box of that size between two anchor centres matches none."""
    return [{"level": level_name(i, stride), "size": float(size), "stride": int(stride)}
            for i, (size, stride) in enumerate(zip(sizes, strides)) if size < stride]


def adoption(configured: Dict[str, object], adopted: Dict[str, object]) -> Dict[str, object]:
    """Whether to adopt the fitted anchors: only when their best-possible recall on the real
    anchor grid is at least the configured anchors' (the shape-only score ignores where the
    anchors are, so a fit can raise it and still lose boxes on the grid)."""
    fit, now = adopted["grid_best_possible_recall"], configured["grid_best_possible_recall"]
    small = ", ".join(f"{s['level']} {s['size']:g} < stride {s['stride']}"
                      for s in adopted["smaller_than_stride"])
    if fit >= now:
        reason = (f"adopt the fitted anchors: their grid BPR {fit:.3f} is >= the configured "
                  f"{now:.3f} (grid mean best IoU {adopted['grid_mean_best_iou']:.3f} vs "
                  f"{configured['grid_mean_best_iou']:.3f})")
    else:
        reason = (f"keep the configured anchors: the fit's grid BPR {fit:.3f} is below the "
                  f"configured {now:.3f}, although its shape-only BPR is "
                  f"{adopted['best_possible_recall']:.3f}")
        if small:
            reason += f"; fitted anchors smaller than their level's stride ({small}) miss boxes " \
                      "that lie between anchor positions"
    return {"adopt": bool(fit >= now), "reason": reason}


def anchor_report(boxes_yxyx: np.ndarray, image_size, sizes: Sequence[float],
                  strides: Sequence[int], scales: Sequence[float], aspect_ratios: Sequence[float],
                  iou_threshold: float = 0.5, seed: int = 0) -> Dict[str, object]:
    """Configured vs fitted vs adopted anchors on the same boxes (model-input pixels, yxyx):
    shape-only scores for all three, on-the-grid scores and the levels whose anchors are
    smaller than their stride for the two the generator can express, and the
    ``recommendation`` (see ``adoption``)."""
    boxes_yxyx = np.asarray(boxes_yxyx, dtype=np.float64).reshape(-1, 4)
    boxes_wh = np.stack([boxes_yxyx[:, 3] - boxes_yxyx[:, 1], boxes_yxyx[:, 2] - boxes_yxyx[:, 0]], axis=1)
    fitted = fit_anchor_config(boxes_wh, len(sizes), scales, len(aspect_ratios), seed=seed)
    configured = anchor_shapes(sizes, scales, aspect_ratios)
    adopted = anchor_shapes(fitted.sizes, fitted.scales, fitted.aspect_ratios)

    def on_grid(level_sizes, level_ratios):
        grid = generate_anchors(image_size, level_sizes, strides, scales, level_ratios)
        fit = score_anchor_grid(boxes_yxyx, grid, iou_threshold)
        return {"grid_best_possible_recall": fit.best_possible_recall,
                "grid_mean_best_iou": fit.mean_best_iou}

    configured_row = {"sizes": [float(s) for s in sizes], "scales": [float(s) for s in scales],
                      "aspect_ratios": [float(r) for r in aspect_ratios],
                      **score_anchors(boxes_wh, configured, iou_threshold).as_dict(),
                      **on_grid(sizes, aspect_ratios),
                      "smaller_than_stride": smaller_than_stride(sizes, strides)}
    adopted_row = {"sizes": fitted.sizes, "scales": fitted.scales,
                   "aspect_ratios": fitted.aspect_ratios,
                   **score_anchors(boxes_wh, adopted, iou_threshold).as_dict(),
                   **on_grid(fitted.sizes, fitted.aspect_ratios),
                   "smaller_than_stride": smaller_than_stride(fitted.sizes, strides)}
    return {
        "num_boxes": int(len(boxes_wh)),
        "iou_threshold": iou_threshold,
        "configured": configured_row,
        "fitted_clusters": {"clusters_wh": fitted.clusters_wh,
                            **score_anchors(boxes_wh, np.asarray(fitted.clusters_wh),
                                            iou_threshold).as_dict()},
        "adopted": adopted_row,
        "recommendation": adoption(configured_row, adopted_row),
    }
