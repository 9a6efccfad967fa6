"""What a run settles before the pipeline is wired: generated data written to files, and the
class list the gates are built with. (``create_pipeline`` itself only wires.)"""
from __future__ import annotations

import copy
from typing import List

import visionpipe  # noqa: F401

from visionpipe.core.errors import ConfigError


def resolve_data_source(config, run_dir: str):
    """Generated sources (shapes, digits) are written to files first, then ingested like any
    other source; returns the config ImageExampleGen reads."""
    from visionpipe.datasets import GENERATED_SOURCES
    from visionpipe.tasks import prepare_generated_source

    if config.data.source not in GENERATED_SOURCES:
        return config
    resolved = copy.deepcopy(config)
    resolved.data.path, resolved.data.source = prepare_generated_source(config, run_dir)
    return resolved


def class_names_for_wiring(config) -> List[str]:
    """The class list the gate is built with: data.class_names, the generator's classes, or
    what a listed source (folder, CSV, COCO, VOC) declares. The run re-checks it."""
    from visionpipe.components.data_validation.wiring import expected_class_names
    from visionpipe.components.image_example_gen.sources import source_for

    names = expected_class_names(config) or source_for(config).class_names
    if not names:
        raise ConfigError(
            f"data.class_names: required for source {config.data.source!r}, whose classes are only "
            "known after ingestion (the evaluation gate needs the class list); "
            "set data.class_names=[a,b,...]")
    _check_task_accepts(config, list(names))
    return list(names)


def _check_task_accepts(config, names: List[str]) -> None:
    """Build the task once with these classes so that a class list it cannot train on (one
    class for a classifier) stops the run here, naming the data, not inside the Trainer."""
    from visionpipe.tasks import get_task

    try:
        get_task(config, names)
    except ValueError as err:
        where = f"data.path {config.data.path}" if config.data.path else "data.class_names"
        raise ConfigError(f"{where}: {err}") from None
