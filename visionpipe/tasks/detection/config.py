"""The ``detection:`` config section (contributed to the config by the detection task)."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import List

from visionpipe.core.config import require as _require

RETINANET_STRIDES = [8, 16, 32, 64, 128]  # keras-cv RetinaNet's feature pyramid P3..P7
ARCHITECTURES = ("retinanet", "yolov8", "ssd")


@dataclass
class DetectionConfig:
    architecture: str = "retinanet"  # retinanet (anchor-based) | yolov8 (anchor-free) | ssd
    # RetinaNet/SSD anchors: one base size (pixels of the model input) per pyramid level.
    anchor_sizes: List[float] = field(default_factory=lambda: [16.0, 32.0, 64.0, 128.0, 256.0])
    anchor_strides: List[int] = field(default_factory=lambda: list(RETINANET_STRIDES))
    anchor_scales: List[float] = field(default_factory=lambda: [1.0, 1.26, 1.587])
    anchor_aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    fpn_channels: int = 64  # RetinaNet pyramid and head width (the paper uses 256); SSD extra layers' width
    head_conv_layers: int = 2
    yolo_fpn_depth: int = 1
    box_loss: str = "smoothl1"  # retinanet, ssd: smoothl1 | huber; yolov8 always uses CIoU
    # SSD: an anchor is positive at IoU >= ssd_match_iou with an object (and every object
    # takes its best anchor); hard-negative mining keeps ssd_neg_pos_ratio x positives
    ssd_match_iou: float = 0.5
    ssd_neg_pos_ratio: float = 3.0
    # export and evaluation post-processing (NMS lives inside the exported model)
    score_threshold: float = 0.05
    iou_threshold: float = 0.5
    max_detections: int = 100
    pre_nms_top_k: int = 1000
    # augmentation
    mosaic: bool = False
    min_box_pixels: float = 2.0  # boxes thinner than this after augmentation are dropped
    anchor_fit_iou: float = 0.5  # IoU of the best-possible-recall in `visionpipe anchors`

    def validate(self) -> None:
        _require(self.architecture in ARCHITECTURES, "detection.architecture",
                 f"must be one of {', '.join(repr(a) for a in ARCHITECTURES)}, got {self.architecture!r}")
        _require(len(self.anchor_sizes) == len(self.anchor_strides), "detection.anchor_sizes",
                 f"needs one size per stride {self.anchor_strides}, got {self.anchor_sizes}")
        if self.architecture == "retinanet":
            _require(list(self.anchor_strides) == RETINANET_STRIDES, "detection.anchor_strides",
                     f"must be {RETINANET_STRIDES} (RetinaNet's pyramid levels P3..P7)")
        if self.architecture == "ssd":
            strides = [int(s) for s in self.anchor_strides]
            _require(strides[0] in (8, 16, 32) and all(b == 2 * a for a, b in zip(strides, strides[1:])),
                     "detection.anchor_strides",
                     f"SSD needs strides that start at 8, 16 or 32 (backbone maps) and double "
                     f"from level to level (extra layers beyond 32), got {self.anchor_strides}")
            _require(0.0 < self.ssd_match_iou < 1.0, "detection.ssd_match_iou", "must be in (0, 1)")
            _require(self.ssd_neg_pos_ratio > 0, "detection.ssd_neg_pos_ratio", "must be > 0")
        for key in ("anchor_sizes", "anchor_scales", "anchor_aspect_ratios", "anchor_strides"):
            values = getattr(self, key)
            _require(bool(values) and all(v > 0 for v in values), f"detection.{key}",
                     f"must be a non-empty list of positive numbers, got {values}")
        _require(self.fpn_channels >= 8, "detection.fpn_channels", "must be >= 8")
        _require(self.head_conv_layers >= 1, "detection.head_conv_layers", "must be >= 1")
        _require(self.yolo_fpn_depth >= 1, "detection.yolo_fpn_depth", "must be >= 1")
        _require(self.box_loss in ("smoothl1", "huber"), "detection.box_loss",
                 "must be 'smoothl1' or 'huber'")
        _require(0.0 <= self.score_threshold < 1.0, "detection.score_threshold", "must be in [0, 1)")
        _require(0.0 < self.iou_threshold <= 1.0, "detection.iou_threshold", "must be in (0, 1]")
        _require(self.max_detections >= 1, "detection.max_detections", "must be >= 1")
        _require(self.pre_nms_top_k >= self.max_detections, "detection.pre_nms_top_k",
                 "must be >= detection.max_detections")
        _require(self.min_box_pixels >= 0, "detection.min_box_pixels", "must be >= 0")
        _require(0.0 < self.anchor_fit_iou < 1.0, "detection.anchor_fit_iou", "must be in (0, 1)")
