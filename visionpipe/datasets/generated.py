"""Materialise a generated data source (``data.source: shapes | digits``) as files that the
ordinary ingestion reads: a class-folder tree for classification, a ``path,label`` CSV for
multi-label, COCO JSON for detection."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

GENERATED_SOURCES = ("shapes", "digits")
# The ingestion source that reads what prepare_generated_source writes, per task.
INGEST_SOURCE_BY_TASK = {"classification": "folder", "multilabel": "csv", "detection": "coco"}
DIGITS_AVAILABLE = 1797


def ingest_source(config) -> str:
    """The ``data.source`` ImageExampleGen should use on ``prepare_generated_source``'s path."""
    _check(config)
    return INGEST_SOURCE_BY_TASK[config.task]


def generated_class_names(config) -> list:
    """The classes a generated source writes (empty for a source that is not generated)."""
    if config.data.source not in GENERATED_SOURCES:
        return []
    if config.data.class_names:
        return list(config.data.class_names)
    if config.data.source == "digits":
        from visionpipe.datasets.digits import DIGIT_CLASSES

        return list(DIGIT_CLASSES)
    from visionpipe.datasets.shapes import DEFAULT_CLASSES

    return list(DEFAULT_CLASSES)


def _check(config) -> None:
    from visionpipe.pipeline.config import ConfigError

    source = config.data.source
    if source not in GENERATED_SOURCES:
        raise ConfigError(f"data.source: {source!r} is not generated; expected one of "
                          f"{GENERATED_SOURCES}")
    if config.task not in INGEST_SOURCE_BY_TASK:
        raise ConfigError(f"task: generated data has no layout for task {config.task!r}; "
                          f"supported: {sorted(INGEST_SOURCE_BY_TASK)}")
    if source == "digits" and config.task != "classification":
        raise ConfigError(f"data.source: 'digits' only provides classification labels, "
                          f"not {config.task!r}; use data.source=shapes")
    size = config.data.image_size
    if source == "digits" and size % 8:
        raise ConfigError(f"data.image_size: digits are 8x8 and upscale by whole factors; "
                          f"use a multiple of 8, got {size}")
    if source == "digits" and config.data.num_images > DIGITS_AVAILABLE:
        raise ConfigError(f"data.num_images: scikit-learn ships {DIGITS_AVAILABLE} digits, "
                          f"got {config.data.num_images}")
    if source == "shapes" and size < 16:
        raise ConfigError(f"data.image_size: shapes need at least 16 pixels, got {size}")


def _write(config, out_dir: Path) -> str:
    data = config.data
    classes = data.class_names or None
    if data.source == "digits":
        from visionpipe.datasets.digits import write_digits_folder

        write_digits_folder(out_dir, data.num_images, data.image_size, data.seed, classes)
        return str(out_dir)
    from visionpipe.datasets import shapes

    if config.task == "classification":
        shapes.write_classification_folder(out_dir, data.num_images, data.image_size, data.seed,
                                           classes)
        return str(out_dir)
    if config.task == "multilabel":
        return shapes.write_multilabel_csv(out_dir, data.num_images, data.image_size, data.seed,
                                           classes, separator=data.csv_label_separator)
    return shapes.write_coco_detection(out_dir, data.num_images, data.image_size, data.seed,
                                       classes)


def prepare_generated_source(config, run_dir) -> str:
    """Write the generated data under ``<run_dir>/generated/`` and return the path to ingest
    with :func:`ingest_source` (a folder root, a CSV or a COCO JSON).

    The output is named by every parameter that shapes it and is only written once:
    a later call with the same parameters returns the same untouched files (so TFX's
    cache and file fingerprints stay valid). The files appear atomically.
    """
    _check(config)
    data = config.data
    params = {"source": data.source, "task": config.task, "num_images": data.num_images,
              "image_size": data.image_size, "seed": data.seed,
              "class_names": list(data.class_names),
              "csv_label_separator": data.csv_label_separator}
    name = (f"{data.source}-{config.task}-n{data.num_images}-px{data.image_size}"
            f"-seed{data.seed}")
    if data.class_names:
        name += "-" + "_".join(data.class_names)
    root = Path(run_dir) / "generated"
    target = root / name
    # The record lives beside the tree, not in it, so the folder source sees only images.
    record = root / f"{name}.json"
    if target.is_dir() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("params") == params:
            return saved["path"]
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.mkdir(parents=True)
    written = _write(config, staging)
    staging.rename(target)
    path = str(target / Path(written).relative_to(staging))
    record.write_text(json.dumps({"params": params, "path": path}, indent=1))
    return path
