"""Materialise generated data (``data.source: shapes | digits``) as files that the ordinary
ingestion reads. What to write for a task is the task's (``Task.write_generated``); this
module names, caches and writes the output atomically and knows each generator's limits."""
from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Callable, Dict, Tuple

from visionpipe.core.errors import ConfigError

GENERATED_SOURCES = ("shapes", "digits")
DIGITS_AVAILABLE = 1797


def generated_class_names(data) -> list:
    """The classes a generated source writes (empty for a source that is not generated)."""
    if data.source not in GENERATED_SOURCES:
        return []
    if data.class_names:
        return list(data.class_names)
    if data.source == "digits":
        from visionpipe.datasets.digits import DIGIT_CLASSES

        return list(DIGIT_CLASSES)
    from visionpipe.datasets.shapes import DEFAULT_CLASSES

    return list(DEFAULT_CLASSES)


def check_generator_limits(data) -> None:
    """What each generator can make (ConfigError naming the key otherwise)."""
    source, size = data.source, data.image_size
    if source not in GENERATED_SOURCES:
        raise ConfigError(f"data.source: {source!r} is not generated; expected one of "
                          f"{GENERATED_SOURCES}")
    if source == "digits" and size % 8:
        raise ConfigError(f"data.image_size: digits are 8x8 and upscale by whole factors; "
                          f"use a multiple of 8, got {size}")
    if source == "digits" and data.num_images > DIGITS_AVAILABLE:
        raise ConfigError(f"data.num_images: scikit-learn ships {DIGITS_AVAILABLE} digits, "
                          f"got {data.num_images}")
    if source == "shapes" and size < 16:
        raise ConfigError(f"data.image_size: shapes need at least 16 pixels, got {size}")


def materialise(data, task_name: str, run_dir, write: Callable[[Path], Tuple[str, str]]
                ) -> Tuple[str, str]:
    """Write generated data with ``write(out_dir) -> (path, ingestion source)`` under
    ``<run_dir>/generated/`` once; returns (path to ingest, ingestion source).

    The output is named by every parameter that shapes it: a later call with the same
    parameters returns the same untouched files (so TFX's cache and file fingerprints stay
    valid). The files appear atomically."""
    check_generator_limits(data)
    params: Dict = {"source": data.source, "task": task_name, "num_images": data.num_images,
                    "image_size": data.image_size, "seed": data.seed,
                    "class_names": list(data.class_names),
                    "csv_label_separator": data.csv_label_separator}
    name = f"{data.source}-{task_name}-n{data.num_images}-px{data.image_size}-seed{data.seed}"
    if data.class_names:
        name += "-" + "_".join(data.class_names)
    root = Path(run_dir) / "generated"
    target = root / name
    # The record lives beside the tree, not in it, so the folder source sees only images.
    record = root / f"{name}.json"
    if target.is_dir() and record.is_file():
        saved = json.loads(record.read_text())
        if saved.get("params") == params and "source" in saved:
            return saved["path"], saved["source"]
    staging = root / f".{name}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    shutil.rmtree(target, ignore_errors=True)
    staging.mkdir(parents=True)
    written, source = write(staging)
    staging.rename(target)
    path = str(target / Path(written).relative_to(staging))
    record.write_text(json.dumps({"params": params, "path": path, "source": source}, indent=1))
    return path, source
