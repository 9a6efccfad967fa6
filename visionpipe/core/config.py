"""Typed pipeline configuration: defaults -> YAML file -> ``key=value`` overrides.

Every section is a dataclass with ``validate()``. Unknown keys are rejected with the
closest valid key suggested; values given on the command line are parsed as YAML
scalars (never ``eval``).
"""
from __future__ import annotations

import dataclasses
import difflib
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

import yaml

from visionpipe.core import registry
from visionpipe.core.errors import ConfigError

BACKBONES = ("small_cnn", "mobilenet_v2", "efficientnet_b0", "resnet50")
SOURCES = ("folder", "csv", "coco", "voc", "tfds", "tfrecord", "mask_folder", "shapes", "digits")
SPLIT_BY = ("hash", "group")
OBJECT_SOURCES = ("coco", "voc", "tfds", "tfrecord")  # sources that can carry object boxes
GROUPED_SOURCES = ("folder", "csv", "coco", "tfrecord")  # sources that can carry image/group_id


def require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


#: an image size as the config takes it: one integer (square) or ``[height, width]``
ImageSize = Union[int, List[int]]


def image_hw(value: Any, key: str = "model.image_size") -> Tuple[int, int]:
    """``(height, width)`` of an image size given as one integer (square) or as
    ``[height, width]`` (keras-hub's order); ConfigError naming ``key`` otherwise."""
    def is_int(v):
        return isinstance(v, int) and not isinstance(v, bool)

    if is_int(value):
        return int(value), int(value)
    if isinstance(value, (list, tuple)) and len(value) == 2 and all(is_int(v) for v in value):
        return int(value[0]), int(value[1])
    raise ConfigError(f"{key}: expected one integer (a square) or [height, width], got {value!r}")


@dataclass
class DataConfig:
    source: str = "shapes"
    path: str = ""  # folder root, CSV manifest, COCO JSON, VOC root, TFRecord glob
    images_dir: str = ""  # base for relative image paths (csv, coco)
    tfds_name: str = ""
    tfds_data_dir: str = ""
    tfds_splits: List[str] = field(default_factory=list)  # empty: every prepared split
    class_names: List[str] = field(default_factory=list)  # empty: discovered
    # semantic masks: {stored pixel value: class name}; values become ids 0, 1, ... in
    # ascending order and the names are the class list (e.g. {0: membrane, 255: interior})
    mask_values: Dict[str, str] = field(default_factory=dict)
    # source mask_folder: the image and mask folders under data.path (same file stems)
    image_folder: str = "images"
    mask_folder: str = "masks"
    split_ratios: Dict[str, float] = field(default_factory=lambda: {"train": 0.8, "eval": 0.2})
    use_source_splits: bool = False
    source_split_map: Dict[str, str] = field(default_factory=dict)  # e.g. {test: eval}
    max_bad_fraction: float = 0.0
    csv_label_separator: str = "|"
    # multilabel: an image without labels is a negative (all-zero target) instead of being
    # quarantined as no_labels
    allow_unlabeled: bool = False
    # a class with fewer training images than this stops the ingest (0: no minimum)
    min_examples_per_class: int = 2
    # width x height above which an image is quarantined as too_large, read from its header
    # before it is decoded (PIL's decompression-bomb limit, ~89 Mpx, applies as well)
    max_image_pixels: int = 40_000_000
    # groups (image/group_id: a video, patient or sequence id) and how splits are drawn
    group_key: str = ""  # csv: the column (default 'group'); coco: the image field (default 'video_id')
    group_path_level: int = 0  # folder: images sit this many folders below their class; the first is the group
    split_by: str = "hash"  # hash: of the image bytes | group: of image/group_id (a group never straddles splits)
    # spans: data.path with {SPAN} (and {VERSION}), e.g. incoming/span-{SPAN}/
    span: int = -1  # -1: the latest span; N: that span
    span_window: int = 1  # ingest this many spans, ending at data.span
    span_paths: List[str] = field(default_factory=list)  # set by the run: the spans' paths
    # each object box of a detection source (coco, voc, tfds, tfrecord) becomes its own image
    # labelled with its category, for image-label tasks; the box is widened by crop_margin of
    # its size on each side, and one with a shorter side under crop_min_size px is quarantined
    crop_objects: bool = False
    crop_margin: float = 0.1
    crop_min_size: int = 8
    # generated data (source: shapes | digits)
    num_images: int = 240
    image_size: int = 64
    seed: int = 7
    # validation
    accept_anomalies: List[str] = field(default_factory=list)
    drift_linf_threshold: float = 0.25
    imbalance_ratio_warn: float = 3.0

    @property
    def mask_value_list(self) -> List[int]:
        """``mask_values``' pixel values, ascending: the stored value of id 0, 1, ..."""
        return sorted(int(v) for v in self.mask_values)

    @property
    def mask_class_names(self) -> List[str]:
        """``mask_values``' class names in id order (empty when it is not set)."""
        by_value = {int(v): str(name) for v, name in self.mask_values.items()}
        return [by_value[v] for v in sorted(by_value)]

    def validate(self) -> None:
        require(self.source in SOURCES, "data.source", f"must be one of {SOURCES}, got {self.source!r}")
        if self.source in ("folder", "csv", "coco", "voc", "tfrecord", "mask_folder"):
            require(bool(self.path), "data.path", f"is required for source {self.source!r}")
        if self.source == "tfds":
            require(bool(self.tfds_name), "data.tfds_name", "is required for source 'tfds'")
            require(bool(self.tfds_data_dir), "data.tfds_data_dir",
                     "is required for source 'tfds' (no downloads: point it at a local data_dir)")
        require(0.0 <= self.max_bad_fraction <= 1.0, "data.max_bad_fraction", "must be in [0, 1]")
        require(self.span_window >= 1, "data.span_window", "must be >= 1")
        if "{SPAN}" in self.path or self.span_window > 1:
            require(self.source in ("folder", "csv", "coco", "voc", "mask_folder"), "data.path",
                    f"spans ({{SPAN}} and data.span_window) apply to listed sources (folder, csv, "
                    f"coco, voc, mask_folder), not {self.source!r}")
        if self.span_window > 1:
            require("{SPAN}" in self.path, "data.span_window", "needs a {SPAN} pattern in data.path")
        if self.mask_values:
            require(all(str(v).isdigit() and 0 <= int(v) <= 255 for v in self.mask_values),
                    "data.mask_values",
                    f"keys are 8-bit mask pixel values (0..255), got {list(self.mask_values)}")
            names = self.mask_class_names
            require(len(set(names)) == len(names), "data.mask_values",
                    f"class names repeat: {names}")
            require(not self.class_names or list(self.class_names) == names, "data.class_names",
                    f"must be empty or the names of data.mask_values by ascending value {names}, "
                    f"got {list(self.class_names)}")
        if self.source == "mask_folder":
            require(bool(self.image_folder) and bool(self.mask_folder) and
                    self.image_folder != self.mask_folder, "data.mask_folder",
                    f"data.image_folder and data.mask_folder must be two different folder names, "
                    f"got {self.image_folder!r} and {self.mask_folder!r}")
        require(bool(self.split_ratios), "data.split_ratios", "must name at least one split")
        require(all(v > 0 for v in self.split_ratios.values()), "data.split_ratios",
                 "ratios must be positive")
        require(abs(sum(self.split_ratios.values()) - 1.0) < 1e-6, "data.split_ratios",
                 f"must sum to 1, got {sum(self.split_ratios.values())}")
        require("train" in self.split_ratios, "data.split_ratios", "needs a 'train' split")
        require(self.split_by in SPLIT_BY, "data.split_by",
                f"must be one of {SPLIT_BY}, got {self.split_by!r}")
        require(self.group_path_level >= 0, "data.group_path_level", "must be >= 0")
        if self.crop_objects:
            require(self.source in OBJECT_SOURCES, "data.crop_objects",
                    f"crops object boxes, which sources {OBJECT_SOURCES} carry, not {self.source!r}")
        require(self.crop_margin >= 0, "data.crop_margin", f"must be >= 0, got {self.crop_margin}")
        require(self.crop_min_size >= 1, "data.crop_min_size",
                f"must be >= 1 pixel, got {self.crop_min_size}")
        if self.group_path_level:
            require(self.source == "folder", "data.group_path_level",
                    f"applies to source 'folder'; source {self.source!r} names groups with "
                    "data.group_key")
        if self.group_key:
            require(self.source in ("csv", "coco"), "data.group_key",
                    f"names a CSV column or a COCO image field, not a key of source "
                    f"{self.source!r}" + (" (folders: data.group_path_level)"
                                          if self.source == "folder" else ""))
        if self.split_by == "group":
            require(not self.use_source_splits, "data.split_by",
                    "'group' draws splits by data.split_ratios from the group ids; it cannot "
                    "be combined with data.use_source_splits")
            require(self.source in GROUPED_SOURCES, "data.split_by",
                    f"'group' needs group ids, which sources {GROUPED_SOURCES} carry, not "
                    f"{self.source!r}")
            require(self.source != "folder" or self.group_path_level > 0, "data.group_path_level",
                    "data.split_by 'group' on a folder needs the group folder level "
                    "(<class>/<group>/<image>: data.group_path_level=1)")
        require(self.num_images > 0, "data.num_images", "must be positive")
        require(8 <= self.image_size <= 4096, "data.image_size", "must be in [8, 4096]")
        require(self.drift_linf_threshold > 0, "data.drift_linf_threshold", "must be positive")
        require(self.min_examples_per_class >= 0, "data.min_examples_per_class",
                 f"must be >= 0 (0: no minimum), got {self.min_examples_per_class}")
        require(self.max_image_pixels >= 1, "data.max_image_pixels",
                 f"must be a positive number of pixels, got {self.max_image_pixels}")


@dataclass
class AugmentConfig:
    enabled: bool = True
    seed: int = 11
    horizontal_flip: bool = True
    vertical_flip: bool = False
    rotation: float = 0.0  # fraction of a full turn, as keras RandomRotation
    zoom: float = 0.0
    translation: float = 0.0
    shear: float = 0.0
    brightness: float = 0.0
    contrast: float = 0.0
    gamma: float = 0.0  # max |log(gamma)|
    saturation: float = 0.0
    hue: float = 0.0
    random_crop: float = 0.0  # fraction of side cut away at most, then resized back
    gaussian_noise: float = 0.0  # stddev in [0, 1] pixel units
    cutout: float = 0.0  # side of the erased square as a fraction of the image
    mixup_alpha: float = 0.0
    cutmix_alpha: float = 0.0
    randaugment_magnitude: float = 0.0  # 0 disables RandAugment
    randaugment_ops: int = 2

    def validate(self) -> None:
        for name in ("rotation", "zoom", "translation", "shear", "brightness", "contrast",
                     "saturation", "hue", "random_crop", "gaussian_noise", "cutout",
                     "randaugment_magnitude"):
            value = getattr(self, name)
            require(0.0 <= value <= 1.0, f"augment.{name}", f"must be in [0, 1], got {value}")
        require(self.gamma >= 0, "augment.gamma", "must be >= 0")
        require(self.mixup_alpha >= 0 and self.cutmix_alpha >= 0, "augment.mixup_alpha",
                 "mixup_alpha and cutmix_alpha must be >= 0")
        require(self.randaugment_ops >= 1, "augment.randaugment_ops", "must be >= 1")


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"
    image_size: ImageSize = 64  # one integer (square) or [height, width]
    width: int = 32  # small_cnn base filters
    # small_cnn: attention after every stage: none | se (squeeze-and-excitation) | cbam
    # (channel + spatial, Woo et al. 2018)
    attention: str = "none"
    squeeze_excite: bool = False  # the same as attention: se
    stem_stride: int = 1  # small_cnn: 2 halves every feature map (about 4x fewer FLOPs)
    # classifier head's global pooling: "avg", or "max" (presence of small things: a label is
    # present when any place shows it)
    pooling: str = "avg"
    dropout: float = 0.2
    weights: str = ""  # local .h5/.weights file, a SavedModel dir, or a pushed model dir
    top_k: int = 3
    multilabel_threshold: float = 0.5
    # Split whose predictions pick the per-label thresholds of a multi-label model; without
    # it the eval split is used, and the gate on that split is then optimistic.
    calibration_split: str = "calibration"

    @property
    def hw(self) -> Tuple[int, int]:
        """``model.image_size`` as ``(height, width)``."""
        return image_hw(self.image_size, "model.image_size")

    def validate(self) -> None:
        require(self.backbone in BACKBONES, "model.backbone",
                 f"must be one of {BACKBONES}, got {self.backbone!r}")
        height, width = image_hw(self.image_size, "model.image_size")
        require(16 <= height <= 1024 and 16 <= width <= 1024, "model.image_size",
                f"height and width must be in [16, 1024], got {self.image_size!r}")
        if not isinstance(self.image_size, int):
            self.image_size = [height, width]  # a tuple set in code: YAML-safe and comparable
        require(self.width >= 4, "model.width", "must be >= 4")
        require(self.stem_stride in (1, 2), "model.stem_stride", "must be 1 or 2")
        require(self.attention in ("none", "se", "cbam"), "model.attention",
                f"must be none, se or cbam, got {self.attention!r}")
        if self.squeeze_excite:
            require(self.attention in ("none", "se"), "model.squeeze_excite",
                    f"is attention: se, but model.attention is {self.attention!r}; set one")
            self.attention = "se"
        if self.attention != "none":
            require(self.backbone == "small_cnn", "model.attention",
                    f"applies to small_cnn only, not {self.backbone!r} (whose blocks are fixed)")
        require(self.pooling in ("avg", "max"), "model.pooling",
                f"must be avg or max, got {self.pooling!r}")
        if self.stem_stride != 1:
            require(self.backbone == "small_cnn", "model.stem_stride",
                    f"applies to small_cnn only, not {self.backbone!r}")
        require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        require(self.top_k >= 1, "model.top_k", "must be >= 1")
        require(0.0 < self.multilabel_threshold < 1.0, "model.multilabel_threshold", "must be in (0, 1)")
        require(self.calibration_split not in ("train", "eval"), "model.calibration_split",
                 "must be a split of its own, not train or eval")
        if self.weights:
            require(Path(self.weights).exists(), "model.weights",
                     f"file not found: {self.weights} (weights are never downloaded)")


@dataclass
class TrainConfig:
    epochs: int = 8
    batch_size: int = 32
    learning_rate: float = 2e-3
    lr_schedule: str = "cosine"  # cosine (decays to 1% by the last step) | constant
    fine_tune_epochs: int = 0
    fine_tune_layers: int = 20
    fine_tune_lr_factor: float = 0.1
    label_smoothing: float = 0.0
    # the classifier head's loss (classification, multilabel): cross_entropy | focal
    # (Lin et al. 2017: each example's cross-entropy times (1 - p_true) ** focal_gamma, so
    # easy examples weigh little; focal_gamma 0 is plain cross-entropy)
    loss: str = "cross_entropy"
    focal_gamma: float = 2.0
    # none | balanced (n / (k * n_c)) | effective_number (Cui et al. 2019: (1 - beta) /
    # (1 - beta ** n_c), scaled so the weights average 1 over the training examples)
    class_weights: str = "none"
    class_weight_beta: float = 0.999
    oversample: bool = False
    early_stopping_patience: int = 0  # 0: off
    mixed_precision: str = "auto"  # auto (on GPU) | on | off
    seed: int = 42
    steps_per_epoch: int = 0  # 0: one pass over the data
    eval_steps: int = 0
    # latest_blessed: start from all weights of the latest blessed model of this pipeline
    # (continuous training on new spans); the first run, with none yet, starts from scratch
    warm_start: str = "none"  # none | latest_blessed
    # mirrored: every local GPU (else the CPU) | multi_worker: the TF_CONFIG cluster | tpu
    strategy: str = "mirrored"
    # a compiled Kubeflow/Vertex spec with workers > 1 trains as a Vertex custom job of that
    # many machines (train.strategy multi_worker)
    workers: int = 1
    machine_type: str = "n1-standard-8"
    vertex_project: str = ""
    vertex_region: str = "us-central1"

    def validate(self) -> None:
        require(self.epochs >= 0, "train.epochs", "must be >= 0")
        require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        require(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        require(self.lr_schedule in ("cosine", "constant"), "train.lr_schedule",
                 "must be 'cosine' or 'constant'")
        require(self.fine_tune_epochs >= 0, "train.fine_tune_epochs", "must be >= 0")
        require(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing", "must be in [0, 1)")
        require(self.class_weights in CLASS_WEIGHTINGS, "train.class_weights",
                 f"must be one of {list(CLASS_WEIGHTINGS)}, got {self.class_weights!r}")
        require(0.0 < self.class_weight_beta < 1.0, "train.class_weight_beta",
                 f"must be in (0, 1), e.g. 0.999, got {self.class_weight_beta}")
        require(self.loss in HEAD_LOSSES, "train.loss",
                 f"must be one of {list(HEAD_LOSSES)}, got {self.loss!r}")
        require(self.focal_gamma >= 0, "train.focal_gamma", f"must be >= 0, got {self.focal_gamma}")
        require(self.mixed_precision in ("auto", "on", "off"), "train.mixed_precision",
                 "must be auto, on or off")
        require(self.warm_start in ("none", "latest_blessed"), "train.warm_start",
                 "must be 'none' or 'latest_blessed'")
        require(self.workers >= 1, "train.workers", "must be >= 1")
        if self.workers > 1:
            require(self.strategy == "multi_worker", "train.workers",
                    "more than one worker needs train.strategy: multi_worker")
            require(bool(self.vertex_project), "train.vertex_project",
                    "is required for train.workers > 1 (the Vertex AI project that runs the job)")
        require(self.strategy in ("mirrored", "multi_worker", "tpu"), "train.strategy",
                 "must be mirrored, multi_worker or tpu (parameter_server does not fit Keras "
                 "fit on a tf.data input without a dataset creator; use multi_worker)")


CLASS_WEIGHTINGS = ("none", "balanced", "effective_number")
HEAD_LOSSES = ("cross_entropy", "focal")
DEFAULT_MAX_DROP = 0.02


def _condition_number(value: float) -> str:
    return f"{float(value):g}"


@dataclass
class RobustnessConfig:
    """``evaluate.robustness``: the task metric under corruptions and white-box attacks on the
    candidate's Keras model (``visionpipe.models.robustness``), gated by ``thresholds``
    (absolute lower bounds) and ``max_drops`` (below the clean value), keyed by condition
    (``condition_names()``: ``clean``, ``occlusion_0.25``, ``fgsm_8``, ...)."""
    enabled: bool = False
    max_images: int = 200  # eval images attacked (0: the whole split)
    occlusion: List[float] = field(default_factory=lambda: [0.1, 0.25])  # grey square, area fraction
    brightness: List[float] = field(default_factory=lambda: [0.5, 1.5])  # pixel gain
    contrast: List[float] = field(default_factory=lambda: [0.5])  # gain around the image mean
    illumination_gradient: List[float] = field(default_factory=lambda: [0.5])  # 1-s .. 1+s ramp
    fgsm_epsilons: List[float] = field(default_factory=lambda: [2.0, 8.0])  # pixels of [0, 255]
    pgd_epsilons: List[float] = field(default_factory=lambda: [2.0, 8.0])  # L-infinity, pixels
    pgd_steps: int = 10
    pgd_step_size: float = 0.0  # pixels per step; 0: 2.5 * epsilon / steps
    pgd_random_start: bool = True
    thresholds: Dict[str, float] = field(default_factory=dict)  # {condition: lower bound}
    max_drops: Dict[str, float] = field(default_factory=dict)  # {condition: drop below clean}
    explain_images: int = 8  # Grad-CAM overlays of eval images in the report (0: none)
    seed: int = 0

    def condition_names(self) -> List[str]:
        n = _condition_number
        return (["clean"] + [f"occlusion_{n(v)}" for v in self.occlusion]
                + [f"brightness_{n(v)}" for v in self.brightness]
                + [f"contrast_{n(v)}" for v in self.contrast]
                + [f"gradient_{n(v)}" for v in self.illumination_gradient]
                + [f"fgsm_{n(v)}" for v in self.fgsm_epsilons]
                + [f"pgd_{n(v)}" for v in self.pgd_epsilons])

    def validate(self) -> None:
        key = "evaluate.robustness"
        require(self.max_images >= 0, f"{key}.max_images", "must be >= 0 (0: the whole split)")
        for value in self.occlusion:
            require(0.0 < value < 1.0, f"{key}.occlusion", f"area fractions must be in (0, 1), got {value}")
        for name in ("brightness", "contrast"):
            for value in getattr(self, name):
                require(value >= 0.0, f"{key}.{name}", f"gains must be >= 0, got {value}")
        for value in self.illumination_gradient:
            require(0.0 < value <= 1.0, f"{key}.illumination_gradient",
                    f"strengths must be in (0, 1], got {value}")
        for name in ("fgsm_epsilons", "pgd_epsilons"):
            for value in getattr(self, name):
                require(0.0 < value <= 255.0, f"{key}.{name}",
                        f"epsilons are pixels of [0, 255]: must be in (0, 255], got {value}")
        require(self.pgd_steps >= 1, f"{key}.pgd_steps", "must be >= 1")
        require(self.pgd_step_size >= 0.0, f"{key}.pgd_step_size", "must be >= 0 (0: automatic)")
        require(self.explain_images >= 0, f"{key}.explain_images", "must be >= 0")
        known = self.condition_names()
        for field_name in ("thresholds", "max_drops"):
            for name, value in getattr(self, field_name).items():
                require(name in known, f"{key}.{field_name}.{name}",
                        f"not a configured condition; use one of {known}")
                require(0.0 <= value <= 1.0, f"{key}.{field_name}.{name}", "must be in [0, 1]")
        if (self.thresholds or self.max_drops) and not self.enabled:
            raise ConfigError(f"{key}.enabled: robustness thresholds are set but the robustness "
                              "evaluation is off: set evaluate.robustness.enabled=true")


@dataclass
class EvaluateConfig:
    gate_metric: str = ""  # empty: the task's default (accuracy, f1, map_50, ...)
    thresholds: Optional[Dict[str, float]] = None  # absolute lower bounds; empty: none
    max_drops: Optional[Dict[str, float]] = None  # vs the latest blessed; empty: gate metric 0.02
    # the gate metric must beat the trivial predictor's (one that ignores the image) by this
    min_margin_over_trivial: float = 0.05
    slice_by_class: bool = True
    slice_by_image_size: bool = True
    robustness: RobustnessConfig = field(default_factory=RobustnessConfig)

    def validate(self) -> None:
        self.robustness.validate()
        for name, value in (self.max_drops or {}).items():
            require(value >= 0, f"evaluate.max_drops.{name}", "must be >= 0")
        require(0.0 <= self.min_margin_over_trivial <= 1.0, "evaluate.min_margin_over_trivial",
                "must be in [0, 1]")


STUDENT_INITS = ("teacher", "scratch")


@dataclass
class OptimizeConfig:
    enabled: bool = False
    # post-training quantization to TFLite (model_float32.tflite is always written: the baseline)
    ptq_modes: List[str] = field(default_factory=lambda: ["dynamic", "float16", "int8"])
    representative_samples: int = 100  # training images that calibrate int8
    max_int8_drop: float = 0.01  # gate metric points an int8 file may lose vs model_float32
    repair_int8: bool = True  # keep the worst layers in float when int8 loses too much
    max_float_layers: int = 6  # bound on tensors kept in float by the repair
    eval_max_images: int = 0  # 0: the whole eval split
    latency_runs: int = 30  # batch-1 invokes per file; the report gives the median
    # magnitude pruning during a short fine-tune, then strip
    prune: bool = False
    prune_sparsity: float = 0.5
    prune_structure: str = "unstructured"  # unstructured | 2by4 (2:4 structured sparsity)
    prune_epochs: int = 4  # sparsity ramps up over the first two thirds, then recovers
    max_prune_drop: float = 0.01
    # knowledge distillation into a smaller student
    distill: bool = False
    student_backbone: str = "small_cnn"
    student_width: int = 8
    # teacher: start the student from evenly spaced channels of the teacher's trained weights
    # ("weight selection"; needs the teacher's backbone); scratch: random initialisation
    student_init: str = "teacher"
    distill_temperature: float = 4.0
    distill_alpha: float = 0.1  # weight of the hard-label loss; 1 - alpha on the soft KL
    # function matching: teacher and student see the same augmented view (augment.*, as the
    # Trainer) and MixUp blends of the training batch (Beta(a, a); 0 turns MixUp off)
    distill_augment: bool = True
    distill_mixup_alpha: float = 0.0
    distill_epochs: int = 5
    distill_learning_rate: float = 2e-3
    max_distill_drop: float = 0.05
    # quantization-aware training: off | fallback (when int8 PTQ fails its gate) | always
    qat: str = "fallback"
    qat_epochs: int = 1
    fine_tune_learning_rate: float = 1e-4  # pruning and QAT fine-tunes
    # model.onnx (tf2onnx, from the SavedModel's serving_tensor signature), scored with
    # onnxruntime and gated on its drop vs the float baseline
    onnx: bool = False
    max_onnx_drop: float = 0.01

    def validate(self) -> None:
        require(0 <= self.max_int8_drop <= 1, "optimize.max_int8_drop", "must be in [0, 1]")
        modes = ("dynamic", "float16", "int8")
        for mode in self.ptq_modes:
            require(mode in modes, "optimize.ptq_modes", f"must be a subset of {modes}, got {mode!r}")
        require(self.representative_samples >= 1, "optimize.representative_samples", "must be >= 1")
        require(self.max_float_layers >= 0, "optimize.max_float_layers", "must be >= 0")
        require(self.eval_max_images >= 0, "optimize.eval_max_images", "must be >= 0")
        require(self.latency_runs >= 1, "optimize.latency_runs", "must be >= 1")
        require(0.0 < self.prune_sparsity < 1.0, "optimize.prune_sparsity", "must be in (0, 1)")
        require(self.prune_structure in ("unstructured", "2by4"), "optimize.prune_structure",
                 f"must be 'unstructured' or '2by4', got {self.prune_structure!r}")
        if self.prune_structure == "2by4":
            require(self.prune_sparsity == 0.5, "optimize.prune_sparsity",
                     "must be 0.5 with prune_structure '2by4' (2 of every 4 weights are zero)")
        require(self.student_backbone in BACKBONES, "optimize.student_backbone",
                 f"must be one of {BACKBONES}, got {self.student_backbone!r}")
        require(self.student_width >= 4, "optimize.student_width", "must be >= 4")
        require(self.student_init in STUDENT_INITS, "optimize.student_init",
                 f"must be one of {STUDENT_INITS}, got {self.student_init!r}")
        require(self.distill_temperature > 0, "optimize.distill_temperature", "must be > 0")
        require(0.0 <= self.distill_alpha <= 1.0, "optimize.distill_alpha", "must be in [0, 1]")
        require(self.distill_mixup_alpha >= 0, "optimize.distill_mixup_alpha",
                 f"must be >= 0 (0: no MixUp), got {self.distill_mixup_alpha}")
        require(self.qat in ("off", "fallback", "always"), "optimize.qat",
                 f"must be off, fallback or always, got {self.qat!r}")
        for key in ("prune_epochs", "distill_epochs", "qat_epochs"):
            require(getattr(self, key) >= 1, f"optimize.{key}", "must be >= 1")
        for key in ("max_prune_drop", "max_distill_drop", "max_onnx_drop"):
            require(0 <= getattr(self, key) <= 1, f"optimize.{key}", "must be in [0, 1]")
        for key in ("fine_tune_learning_rate", "distill_learning_rate"):
            require(getattr(self, key) > 0, f"optimize.{key}", "must be > 0")


@dataclass
class PushConfig:
    serving_root: str = "serving_models"
    model_name: str = ""  # empty: the pipeline name
    load_check: bool = True
    # ops the LoadCheck's model scan lets through (see visionpipe.serving.model_scan.DENYLIST)
    allowed_ops: List[str] = field(default_factory=list)

    def validate(self) -> None:
        require(bool(self.serving_root), "push.serving_root", "must be set")
        require(isinstance(self.allowed_ops, list)
                and all(isinstance(op, str) and op.strip() for op in self.allowed_ops),
                "push.allowed_ops", "must be a list of op names")


@dataclass
class ServeConfig:
    rest_api_port: int = 8501
    port: int = 8500
    host: str = "127.0.0.1"

    def validate(self) -> None:
        for key in ("rest_api_port", "port"):
            require(0 <= getattr(self, key) < 65536, f"serve.{key}", "must be a TCP port")


@dataclass
class RunnerConfig:
    kind: str = "local"  # local | beam
    output_dir: str = "runs"
    enable_cache: bool = True
    beam_direct_num_workers: int = 1
    # the Beam runner of every Beam component (ImageExampleGen, StatisticsGen, the evaluator):
    # direct | direct_multiprocessing | portable | flink | spark | dataflow
    beam_runner: str = "direct"
    beam_args: List[str] = field(default_factory=list)  # Beam pipeline options, passed as given

    def validate(self) -> None:
        require(self.kind in ("local", "beam"), "runner.kind", "must be 'local' or 'beam'")
        require(self.beam_runner in BEAM_RUNNERS, "runner.beam_runner",
                f"must be one of {sorted(BEAM_RUNNERS)}, got {self.beam_runner!r}")
        require(isinstance(self.beam_args, list) and all(
            isinstance(a, str) and a.startswith("--") for a in self.beam_args),
            "runner.beam_args", "must be a list of Beam options, e.g. ['--flink_master=host:8081']")
        given = {a.split("=", 1)[0] for a in self.beam_args}
        missing = [flag for flag in BEAM_RUNNERS[self.beam_runner][1] if flag not in given]
        require(not missing, "runner.beam_args",
                f"runner {self.beam_runner!r} needs {', '.join(missing)}")
        require(not any(a.startswith("--runner") for a in self.beam_args), "runner.beam_args",
                "set the runner with runner.beam_runner, not --runner")

    def beam_pipeline_args(self) -> List[str]:
        """The Beam options every Beam component runs with."""
        runner, _ = BEAM_RUNNERS[self.beam_runner]
        if self.beam_runner == "direct":
            local = ["--direct_running_mode=in_memory",
                     f"--direct_num_workers={self.beam_direct_num_workers}"]
        elif self.beam_runner == "direct_multiprocessing":
            local = ["--direct_running_mode=multi_processing",
                     f"--direct_num_workers={max(2, self.beam_direct_num_workers)}"]
        else:
            local = []
        return [f"--runner={runner}", *local, *self.beam_args]


# runner.beam_runner -> (Beam's runner name, the options it cannot run without)
BEAM_RUNNERS = {
    "direct": ("DirectRunner", ()),
    "direct_multiprocessing": ("DirectRunner", ()),
    "portable": ("PortableRunner", ("--job_endpoint",)),
    "flink": ("FlinkRunner", ("--flink_master",)),
    "spark": ("SparkRunner", ("--spark_master_url",)),
    "dataflow": ("DataflowRunner", ("--project", "--region", "--temp_location")),
}


COMMON_SECTIONS = ("data", "augment", "model", "train", "evaluate", "optimize", "push", "serve",
                   "runner")


@dataclass
class PipelineConfig:
    """The whole config: the common sections below plus the sections the registered tasks
    contribute (``Task.config_sections``, e.g. ``detection``), read as attributes alike."""

    name: str = "visionpipe"
    task: str = "classification"
    data: DataConfig = field(default_factory=DataConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig)
    optimize: OptimizeConfig = field(default_factory=OptimizeConfig)
    push: PushConfig = field(default_factory=PushConfig)
    serve: ServeConfig = field(default_factory=ServeConfig)
    runner: RunnerConfig = field(default_factory=RunnerConfig)

    def __post_init__(self):
        self.__dict__["_task_sections"] = {name: section()
                                           for name, section in registry.config_sections().items()}

    def __getattr__(self, name: str):
        sections = self.__dict__.get("_task_sections") if not name.startswith("__") else None
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"{type(self).__name__} has no section or key {name!r}")

    @property
    def task_sections(self) -> Dict[str, Any]:
        return dict(self.__dict__["_task_sections"])

    def sections(self) -> Dict[str, Any]:
        """{name: section dataclass}, common sections first, then the tasks' sections."""
        common = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                  if dataclasses.is_dataclass(getattr(self, f.name))}
        return {**common, **self.task_sections}

    def validate(self) -> "PipelineConfig":
        task = registry.task_class(self.task)
        require(self.name.replace("-", "").replace("_", "").isalnum(), "name",
                "use letters, digits, '-' and '_' only")
        for section in self.sections().values():
            section.validate()
        self._fill_task_defaults(task)
        self._check_gate_metrics(task)
        self._check_augment_keys(task)
        require(self.train.loss == TrainConfig.loss or self.train.loss in task.train_losses,
                "train.loss", f"task {self.task!r} does not apply train.loss="
                f"{self.train.loss!r}; it honours {list(task.train_losses) or 'none'} "
                "(detection and segmentation set their losses in their own sections)")
        task.validate_config(self)
        if self.evaluate.robustness.enabled:
            require(not task.robustness_unsupported, "evaluate.robustness.enabled",
                    f"task {self.task!r}: {task.robustness_unsupported}")
        if self.data.allow_unlabeled:
            require(task.image_labels == "multi", "data.allow_unlabeled",
                    f"applies to multi-label tasks only (task is {self.task!r}): a single-label "
                    "image needs exactly one label, and a detection image without boxes is "
                    "always kept as a background image")
        if self.data.crop_objects:
            require(task.image_labels in ("single", "multi"), "data.crop_objects",
                    f"makes image-label examples (a crop and its category); task {self.task!r} "
                    "does not read image labels")
        opt = self.optimize
        if opt.distill and opt.student_init == "teacher":
            require(opt.student_backbone == self.model.backbone, "optimize.student_init",
                    f"'teacher' selects the student's weights from a teacher of the same "
                    f"backbone, but the student is {opt.student_backbone!r} and the teacher "
                    f"{self.model.backbone!r}: set optimize.student_init=scratch")
        return self

    def _fill_task_defaults(self, task) -> None:
        ev = self.evaluate
        if not ev.gate_metric:
            ev.gate_metric = task.default_gate_metric
        if ev.thresholds is None:
            ev.thresholds = {}
        if ev.max_drops is None:
            ev.max_drops = {ev.gate_metric: DEFAULT_MAX_DROP}

    def _check_gate_metrics(self, task) -> None:
        known = tuple(task.metric_names(self))
        if not known:
            return

        def ok(name):
            return name in known or any(k.endswith("/") and name.startswith(k) for k in known)

        ev = self.evaluate
        require(ok(ev.gate_metric), "evaluate.gate_metric",
                f"{ev.gate_metric!r} is not a metric of task {self.task!r}; use one of {list(known)}")
        for key, names in (("thresholds", ev.thresholds), ("max_drops", ev.max_drops)):
            for name in names:
                require(ok(name), f"evaluate.{key}.{name}",
                        f"not a metric of task {self.task!r}; use one of {list(known)}")

    def _check_augment_keys(self, task) -> None:
        honoured = task.augment_keys
        if honoured is None or not self.augment.enabled:
            return
        defaults = AugmentConfig()
        ignored = [f.name for f in dataclasses.fields(AugmentConfig)
                   if f.name not in honoured
                   and getattr(self.augment, f.name) != getattr(defaults, f.name)]
        require(not ignored, f"augment.{ignored[0]}" if ignored else "augment",
                f"task {self.task!r} does not apply {['augment.' + k for k in ignored]}; "
                f"its augmentation honours {['augment.' + k for k in honoured]}")

    @property
    def model_name(self) -> str:
        return self.push.model_name or self.name

    def to_dict(self) -> Dict[str, Any]:
        values = dataclasses.asdict(self)
        values.update({name: dataclasses.asdict(s) for name, s in self.task_sections.items()})
        return values

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def all_keys(cls=None, prefix: str = "") -> List[str]:
    """Every dotted key the config accepts (for suggestions and docs); the whole config's,
    task sections included, unless ``cls`` names one section dataclass."""
    if cls is None or cls is PipelineConfig:
        keys = _dataclass_keys(PipelineConfig, prefix)
        for name, section in registry.config_sections().items():
            keys.extend(_dataclass_keys(section, f"{prefix}{name}."))
        return keys
    return _dataclass_keys(cls, prefix)


def _dataclass_keys(cls, prefix: str) -> List[str]:
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(_dataclass_keys(hints[f.name], key + "."))
        else:
            keys.append(key)
    return keys


def _first_leaf(key: str, value: Any) -> str:
    """``trian`` given as ``{epochs: 3}`` is reported as ``trian.epochs``, the key typed."""
    while isinstance(value, dict) and value:
        name, value = next(iter(value.items()))
        key = f"{key}.{name}"
    return key


def _unknown_key(key: str) -> ConfigError:
    close = suggest_key(key, all_keys())
    hint = f"; did you mean {close!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def suggest_key(key: str, keys: List[str]) -> Optional[str]:
    """The valid key closest to ``key``: the section first, then the key within it (so
    ``trian.epochs`` is ``train.epochs``, not the whole string's nearest, ``train.seed``)."""
    section, _, rest = key.partition(".")
    by_section: Dict[str, List[str]] = {}
    for known in keys:
        head, dot, tail = known.partition(".")
        if dot:
            by_section.setdefault(head, []).append(tail)
    if rest:
        sections = [section] if section in by_section else difflib.get_close_matches(
            section, list(by_section), n=1, cutoff=0.5)
        for name in sections:
            inner = difflib.get_close_matches(rest, by_section[name], n=1, cutoff=0.5)
            if inner:
                return f"{name}.{inner[0]}"
    close = difflib.get_close_matches(key, keys, n=1, cutoff=0.5)
    if close:
        return close[0]
    leaf = key.rsplit(".", 1)[-1]
    return next((k for k in keys if k.rsplit(".", 1)[-1] == leaf), None)


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X], or one of several types (ImageSize)
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        if value is None and len(args) < len(typing.get_args(hint)):
            return None
        if len(args) == 1:
            return _coerce(value, args[0], key)
        for arg in args:
            try:
                return _coerce(value, arg, key)
            except ConfigError:
                continue
        raise ConfigError(f"{key}: expected {' or '.join(_describe(a) for a in args)}, "
                          f"got {value!r}")
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key}: expected true or false, got {value!r}")
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if hint is str:
        if isinstance(value, (dict, list)):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return "" if value is None else str(value)
    if origin in (list, List):
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint)
        return [_coerce(v, item, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin in (dict, Dict):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint)
        return {str(k): _coerce(v, item, f"{key}.{k}") for k, v in value.items()}
    return value


def _describe(hint: Any) -> str:
    if typing.get_origin(hint) in (list, List):
        item = typing.get_args(hint)[0]
        return "a list of " + {int: "integers", float: "numbers", str: "strings"}.get(item, str(item))
    return {int: "an integer", float: "a number", str: "a string", bool: "true or false"}.get(
        hint, getattr(hint, "__name__", str(hint)))


def _merge(obj: Any, values: Dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)} | set(getattr(obj, "task_sections", {}))
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown_key(_first_leaf(key, value))
        current = getattr(obj, name)
        if dataclasses.is_dataclass(current):
            if value is None:
                continue
            if not isinstance(value, dict):
                raise ConfigError(f"{key}: expected a mapping of keys, got {value!r}")
            _merge(current, value, key + ".")
        else:
            setattr(obj, name, _coerce(value, hints[name], key))


def parse_overrides(overrides: List[str]) -> Dict[str, Any]:
    """Turn ``["train.epochs=3", "model.backbone=resnet50"]`` into a nested dict."""
    nested: Dict[str, Any] = {}
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r} is not of the form key=value")
        key, raw = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"override {item!r} has an empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError as err:
            raise ConfigError(f"{key}: cannot parse value {raw!r}: {err}") from None
        node = nested
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {key!r} conflicts with an earlier override")
        node[parts[-1]] = value
    return nested


def load_config(path: Optional[str | Path] = None, overrides: Optional[List[str]] = None,
                validate: bool = True) -> PipelineConfig:
    """Defaults, then the YAML file, then ``key=value`` overrides; validated."""
    config = PipelineConfig()
    if path:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            loaded = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"{path}: top level must be a mapping of sections")
        try:
            _merge(config, loaded)
        except ConfigError as err:
            raise ConfigError(f"{path}: {err}") from None
    if overrides:
        _merge(config, parse_overrides(overrides))
    return config.validate() if validate else config


def config_from_dict(values: Dict[str, Any]) -> PipelineConfig:
    """Rebuild a config saved with ``to_dict()`` (used inside TFX executors)."""
    config = PipelineConfig()
    _merge(config, values)
    return config


# What each pipeline stage is given: the sections it cannot read are reset to their defaults,
# so a change there leaves its TFX cache key alone (changing optimize.* re-runs the optimizer
# and what follows, evaluate.* the evaluator onward, data.* everything). Kept keys survive
# the reset: the Trainer calibrates on the gate metric; every stage names the model.
_STAGE_RESET = {
    "ingest": ("augment", "model", "train", "evaluate", "optimize", "push", "serve", "runner"),
    "train": ("evaluate", "optimize", "push", "serve", "runner"),
    "evaluate": ("optimize", "push", "serve", "runner"),
    "optimize": ("push", "serve", "runner"),
}
_STAGE_KEEP = {
    "ingest": {"push": ("model_name",)},
    "train": {"evaluate": ("gate_metric",), "push": ("model_name",)},
    "evaluate": {"push": ("model_name",)},
    "optimize": {"push": ("model_name",)},
}
STAGES = tuple(_STAGE_RESET)


def stage_config(config: PipelineConfig, stage: str) -> PipelineConfig:
    """The config as the ``stage`` component sees it (see ``_STAGE_RESET``)."""
    if stage not in _STAGE_RESET:
        raise ValueError(f"unknown stage {stage!r}; one of {STAGES}")
    values = config.to_dict()
    defaults = PipelineConfig().to_dict()
    for section in _STAGE_RESET[stage]:
        kept = {k: values[section][k] for k in _STAGE_KEEP[stage].get(section, ())}
        values[section] = {**defaults[section], **kept}
    return config_from_dict(values)
