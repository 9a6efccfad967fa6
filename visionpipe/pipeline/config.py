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
from typing import Any, Dict, List, Optional

import yaml

TASKS = ("classification", "multilabel", "detection")
BACKBONES = ("small_cnn", "mobilenet_v2", "efficientnet_b0", "resnet50")
SOURCES = ("folder", "csv", "coco", "voc", "tfds", "tfrecord", "shapes", "digits")


class ConfigError(ValueError):
    """A configuration problem; the message names the key."""


def _require(cond: bool, key: str, message: str) -> None:
    if not cond:
        raise ConfigError(f"{key}: {message}")


@dataclass
class DataConfig:
    source: str = "shapes"
    path: str = ""  # folder root, CSV manifest, COCO JSON, VOC root, TFRecord glob
    images_dir: str = ""  # base for relative image paths (csv, coco)
    tfds_name: str = ""
    tfds_data_dir: str = ""
    tfds_splits: List[str] = field(default_factory=list)  # empty: every prepared split
    class_names: List[str] = field(default_factory=list)  # empty: discovered
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
    # generated data (source: shapes | digits)
    num_images: int = 240
    image_size: int = 64
    seed: int = 7
    # validation
    accept_anomalies: List[str] = field(default_factory=list)
    drift_linf_threshold: float = 0.25
    imbalance_ratio_warn: float = 3.0

    def validate(self) -> None:
        _require(self.source in SOURCES, "data.source", f"must be one of {SOURCES}, got {self.source!r}")
        if self.source in ("folder", "csv", "coco", "voc", "tfrecord"):
            _require(bool(self.path), "data.path", f"is required for source {self.source!r}")
        if self.source == "tfds":
            _require(bool(self.tfds_name), "data.tfds_name", "is required for source 'tfds'")
            _require(bool(self.tfds_data_dir), "data.tfds_data_dir",
                     "is required for source 'tfds' (no downloads: point it at a local data_dir)")
        _require(0.0 <= self.max_bad_fraction <= 1.0, "data.max_bad_fraction", "must be in [0, 1]")
        _require(bool(self.split_ratios), "data.split_ratios", "must name at least one split")
        _require(all(v > 0 for v in self.split_ratios.values()), "data.split_ratios",
                 "ratios must be positive")
        _require(abs(sum(self.split_ratios.values()) - 1.0) < 1e-6, "data.split_ratios",
                 f"must sum to 1, got {sum(self.split_ratios.values())}")
        _require("train" in self.split_ratios, "data.split_ratios", "needs a 'train' split")
        _require(self.num_images > 0, "data.num_images", "must be positive")
        _require(8 <= self.image_size <= 4096, "data.image_size", "must be in [8, 4096]")
        _require(self.drift_linf_threshold > 0, "data.drift_linf_threshold", "must be positive")
        _require(self.min_examples_per_class >= 0, "data.min_examples_per_class",
                 f"must be >= 0 (0: no minimum), got {self.min_examples_per_class}")
        _require(self.max_image_pixels >= 1, "data.max_image_pixels",
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
            _require(0.0 <= value <= 1.0, f"augment.{name}", f"must be in [0, 1], got {value}")
        _require(self.gamma >= 0, "augment.gamma", "must be >= 0")
        _require(self.mixup_alpha >= 0 and self.cutmix_alpha >= 0, "augment.mixup_alpha",
                 "mixup_alpha and cutmix_alpha must be >= 0")
        _require(self.randaugment_ops >= 1, "augment.randaugment_ops", "must be >= 1")


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"
    image_size: int = 64
    width: int = 32  # small_cnn base filters
    squeeze_excite: bool = False
    dropout: float = 0.2
    weights: str = ""  # local .h5/.weights file, a SavedModel dir, or a pushed model dir
    top_k: int = 3
    multilabel_threshold: float = 0.5
    # Split whose predictions pick the per-label thresholds of a multi-label model; without
    # it the eval split is used, and the gate on that split is then optimistic.
    calibration_split: str = "calibration"

    def validate(self) -> None:
        _require(self.backbone in BACKBONES, "model.backbone",
                 f"must be one of {BACKBONES}, got {self.backbone!r}")
        _require(16 <= self.image_size <= 1024, "model.image_size", "must be in [16, 1024]")
        _require(self.width >= 4, "model.width", "must be >= 4")
        _require(0.0 <= self.dropout < 1.0, "model.dropout", "must be in [0, 1)")
        _require(self.top_k >= 1, "model.top_k", "must be >= 1")
        _require(0.0 < self.multilabel_threshold < 1.0, "model.multilabel_threshold", "must be in (0, 1)")
        _require(self.calibration_split not in ("train", "eval"), "model.calibration_split",
                 "must be a split of its own, not train or eval")
        if self.weights:
            _require(Path(self.weights).exists(), "model.weights",
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
    class_weights: str = "none"  # none | balanced
    oversample: bool = False
    early_stopping_patience: int = 0  # 0: off
    mixed_precision: str = "auto"  # auto (on GPU) | on | off
    seed: int = 42
    steps_per_epoch: int = 0  # 0: one pass over the data
    eval_steps: int = 0

    def validate(self) -> None:
        _require(self.epochs >= 0, "train.epochs", "must be >= 0")
        _require(self.batch_size >= 1, "train.batch_size", "must be >= 1")
        _require(self.learning_rate > 0, "train.learning_rate", "must be > 0")
        _require(self.lr_schedule in ("cosine", "constant"), "train.lr_schedule",
                 "must be 'cosine' or 'constant'")
        _require(self.fine_tune_epochs >= 0, "train.fine_tune_epochs", "must be >= 0")
        _require(0.0 <= self.label_smoothing < 1.0, "train.label_smoothing", "must be in [0, 1)")
        _require(self.class_weights in ("none", "balanced"), "train.class_weights",
                 "must be 'none' or 'balanced'")
        _require(self.mixed_precision in ("auto", "on", "off"), "train.mixed_precision",
                 "must be auto, on or off")


@dataclass
class EvaluateConfig:
    gate_metric: str = "accuracy"
    thresholds: Dict[str, float] = field(default_factory=lambda: {"accuracy": 0.5})
    max_drops: Dict[str, float] = field(default_factory=lambda: {"accuracy": 0.02})
    slice_by_class: bool = True
    slice_by_image_size: bool = True

    def validate(self) -> None:
        _require(bool(self.gate_metric), "evaluate.gate_metric", "must be set")
        for name, value in self.max_drops.items():
            _require(value >= 0, f"evaluate.max_drops.{name}", "must be >= 0")


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

    def validate(self) -> None:
        _require(0 <= self.max_int8_drop <= 1, "optimize.max_int8_drop", "must be in [0, 1]")
        modes = ("dynamic", "float16", "int8")
        for mode in self.ptq_modes:
            _require(mode in modes, "optimize.ptq_modes", f"must be a subset of {modes}, got {mode!r}")
        _require(self.representative_samples >= 1, "optimize.representative_samples", "must be >= 1")
        _require(self.max_float_layers >= 0, "optimize.max_float_layers", "must be >= 0")
        _require(self.eval_max_images >= 0, "optimize.eval_max_images", "must be >= 0")
        _require(self.latency_runs >= 1, "optimize.latency_runs", "must be >= 1")
        _require(0.0 < self.prune_sparsity < 1.0, "optimize.prune_sparsity", "must be in (0, 1)")
        _require(self.prune_structure in ("unstructured", "2by4"), "optimize.prune_structure",
                 f"must be 'unstructured' or '2by4', got {self.prune_structure!r}")
        if self.prune_structure == "2by4":
            _require(self.prune_sparsity == 0.5, "optimize.prune_sparsity",
                     "must be 0.5 with prune_structure '2by4' (2 of every 4 weights are zero)")
        _require(self.student_backbone in BACKBONES, "optimize.student_backbone",
                 f"must be one of {BACKBONES}, got {self.student_backbone!r}")
        _require(self.student_width >= 4, "optimize.student_width", "must be >= 4")
        _require(self.student_init in STUDENT_INITS, "optimize.student_init",
                 f"must be one of {STUDENT_INITS}, got {self.student_init!r}")
        _require(self.distill_temperature > 0, "optimize.distill_temperature", "must be > 0")
        _require(0.0 <= self.distill_alpha <= 1.0, "optimize.distill_alpha", "must be in [0, 1]")
        _require(self.distill_mixup_alpha >= 0, "optimize.distill_mixup_alpha",
                 f"must be >= 0 (0: no MixUp), got {self.distill_mixup_alpha}")
        _require(self.qat in ("off", "fallback", "always"), "optimize.qat",
                 f"must be off, fallback or always, got {self.qat!r}")
        for key in ("prune_epochs", "distill_epochs", "qat_epochs"):
            _require(getattr(self, key) >= 1, f"optimize.{key}", "must be >= 1")
        for key in ("max_prune_drop", "max_distill_drop"):
            _require(0 <= getattr(self, key) <= 1, f"optimize.{key}", "must be in [0, 1]")
        for key in ("fine_tune_learning_rate", "distill_learning_rate"):
            _require(getattr(self, key) > 0, f"optimize.{key}", "must be > 0")


@dataclass
class PushConfig:
    serving_root: str = "serving_models"
    model_name: str = ""  # empty: the pipeline name
    load_check: bool = True

    def validate(self) -> None:
        _require(bool(self.serving_root), "push.serving_root", "must be set")


@dataclass
class ServeConfig:
    rest_api_port: int = 8501
    port: int = 8500
    host: str = "127.0.0.1"

    def validate(self) -> None:
        for key in ("rest_api_port", "port"):
            _require(0 <= getattr(self, key) < 65536, f"serve.{key}", "must be a TCP port")


@dataclass
class RunnerConfig:
    kind: str = "local"  # local | beam
    output_dir: str = "runs"
    enable_cache: bool = True
    beam_direct_num_workers: int = 1

    def validate(self) -> None:
        _require(self.kind in ("local", "beam"), "runner.kind", "must be 'local' or 'beam'")


RETINANET_STRIDES = [8, 16, 32, 64, 128]  # keras-cv RetinaNet's feature pyramid P3..P7


@dataclass
class DetectionConfig:
    architecture: str = "retinanet"  # retinanet (anchor-based) | yolov8 (anchor-free)
    # RetinaNet anchors: one base size (pixels of the model input) per pyramid level.
    anchor_sizes: List[float] = field(default_factory=lambda: [16.0, 32.0, 64.0, 128.0, 256.0])
    anchor_strides: List[int] = field(default_factory=lambda: list(RETINANET_STRIDES))
    anchor_scales: List[float] = field(default_factory=lambda: [1.0, 1.26, 1.587])
    anchor_aspect_ratios: List[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])
    fpn_channels: int = 64  # RetinaNet pyramid and head width (the paper uses 256)
    head_conv_layers: int = 2
    yolo_fpn_depth: int = 1
    box_loss: str = "smoothl1"  # retinanet: smoothl1 | huber; yolov8 always uses CIoU
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
        _require(self.architecture in ("retinanet", "yolov8"), "detection.architecture",
                 f"must be 'retinanet' or 'yolov8', got {self.architecture!r}")
        _require(len(self.anchor_sizes) == len(self.anchor_strides), "detection.anchor_sizes",
                 f"needs one size per stride {self.anchor_strides}, got {self.anchor_sizes}")
        if self.architecture == "retinanet":
            _require(list(self.anchor_strides) == RETINANET_STRIDES, "detection.anchor_strides",
                     f"must be {RETINANET_STRIDES} (RetinaNet's pyramid levels P3..P7)")
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


@dataclass
class PipelineConfig:
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
    detection: DetectionConfig = field(default_factory=DetectionConfig)

    def validate(self) -> "PipelineConfig":
        _require(self.task in TASKS, "task", f"must be one of {TASKS}, got {self.task!r}")
        _require(self.name.replace("-", "").replace("_", "").isalnum(), "name",
                 "use letters, digits, '-' and '_' only")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if dataclasses.is_dataclass(value):
                value.validate()
        if self.data.allow_unlabeled:
            _require(self.task == "multilabel", "data.allow_unlabeled",
                     f"applies to task 'multilabel' only (task is {self.task!r}): a single-label "
                     "image needs exactly one label, and a detection image without boxes is "
                     "always kept as a background image")
        opt = self.optimize
        if opt.distill and opt.student_init == "teacher":
            _require(opt.student_backbone == self.model.backbone, "optimize.student_init",
                     f"'teacher' selects the student's weights from a teacher of the same "
                     f"backbone, but the student is {opt.student_backbone!r} and the teacher "
                     f"{self.model.backbone!r}: set optimize.student_init=scratch")
        return self

    @property
    def model_name(self) -> str:
        return self.push.model_name or self.name

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_yaml())
        return path


def all_keys(cls=PipelineConfig, prefix: str = "") -> List[str]:
    """Every dotted key the config accepts (for suggestions and docs)."""
    keys = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            keys.extend(all_keys(hints[f.name], key + "."))
        else:
            keys.append(key)
    return keys


def _unknown_key(key: str) -> ConfigError:
    close = difflib.get_close_matches(key, all_keys(), n=1, cutoff=0.5)
    if not close:
        leaf = key.rsplit(".", 1)[-1]
        close = [k for k in all_keys() if k.rsplit(".", 1)[-1] == leaf][:1]
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return ConfigError(f"unknown config key {key!r}{hint}")


def _coerce(value: Any, hint: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin is typing.Union:  # Optional[X]
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        return None if value is None else _coerce(value, args[0], key)
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


def _merge(obj: Any, values: Dict[str, Any], prefix: str = "") -> None:
    hints = typing.get_type_hints(type(obj))
    names = {f.name for f in dataclasses.fields(obj)}
    for name, value in values.items():
        key = f"{prefix}{name}"
        if name not in names:
            raise _unknown_key(key)
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
