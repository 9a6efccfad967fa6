"""Runners: LocalDagRunner (default), BeamDagRunner, and a Kubeflow/Vertex spec compiler.

Every run lives in ``<runner.output_dir>/<name>/``: the pipeline root, the SQLite ML
Metadata store, generated data, and ``config.yaml`` (the resolved config of the last run).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import sys
import time
from typing import Dict, List, Optional, Tuple

import visionpipe  # noqa: F401

from visionpipe.pipeline.data_source import class_names_for_wiring, resolve_data_source
from visionpipe.pipeline.pipeline import create_pipeline

DEFAULT_IMAGE = "visionpipe:latest"


@dataclasses.dataclass
class RunPaths:
    run_dir: str
    pipeline_root: str
    metadata_path: str
    config_path: str
    #: seconds per component of the last run (from the progress lines), in run order
    durations: Dict[str, float] = dataclasses.field(default_factory=dict)
    #: the components of the last run that TFX's cache answered
    cached: List[str] = dataclasses.field(default_factory=list)

    @classmethod
    def of(cls, config) -> "RunPaths":
        run_dir = os.path.abspath(os.path.join(config.runner.output_dir, config.name))
        return cls(run_dir=run_dir, pipeline_root=os.path.join(run_dir, "pipeline_root"),
                   metadata_path=os.path.join(run_dir, "metadata.sqlite"),
                   config_path=os.path.join(run_dir, "config.yaml"))


class ProgressPrinter(logging.Handler):
    """Turns TFX's per-component log lines into one line per component with elapsed time."""

    STARTED = ("Component %s is running.", "node %s is running.")
    FINISHED = ("Component %s is finished.", "node %s is finished.")
    CACHED = "A cached execution %d is used."

    def __init__(self, stream=None):
        super().__init__(level=logging.INFO)
        self.stream = stream or sys.stdout
        self.run_start = time.time()
        self.started: Dict[str, float] = {}
        self.durations: Dict[str, float] = {}
        self.cached: Dict[str, bool] = {}
        self._current: Optional[str] = None

    def emit(self, record: logging.LogRecord) -> None:
        if record.name.startswith("visionpipe"):
            self._print(f"    {record.getMessage()}")
        elif record.levelno >= logging.ERROR:
            self._print(f"ERROR {record.getMessage()[:2000]}")
        elif record.msg in self.STARTED and record.args:
            name = str(record.args[0])
            self.started[name] = time.time()
            self._current = name
            self._print(f"{name:<34} running")
        elif record.msg == self.CACHED and self._current:
            self.cached[self._current] = True
        elif record.msg in self.FINISHED and record.args:
            name = str(record.args[0])
            self.durations[name] = time.time() - self.started.get(name, time.time())
            note = " (cached)" if self.cached.get(name) else ""
            self._print(f"{name:<34} done in {self.durations[name]:6.1f}s{note}")

    def _print(self, text: str) -> None:
        self.stream.write(f"[{time.time() - self.run_start:7.1f}s] {text}\n")
        self.stream.flush()


def _quiet_logs() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    for name in ("tensorflow", "absl", "apache_beam", "tfx", "ml_metadata"):
        logging.getLogger(name).setLevel(logging.WARNING)


def build_pipeline(config, stop_after_data: bool = False):
    """The TFX pipeline of a config, laid out under its run folder (what every runner runs)."""
    config.validate()
    paths = RunPaths.of(config)
    os.makedirs(paths.run_dir, exist_ok=True)
    config.save(paths.config_path)
    resolved = resolve_data_source(config, paths.run_dir)
    return create_pipeline(resolved, paths.pipeline_root, paths.metadata_path, paths.run_dir,
                           class_names_for_wiring(resolved), stop_after_data=stop_after_data)


def run_pipeline(config, runner: Optional[str] = None, stop_after_data: bool = False,
                 progress: bool = True) -> RunPaths:
    """Run the pipeline locally (LocalDagRunner or BeamDagRunner); returns where it lives."""
    from tfx import v1 as tfx

    paths = RunPaths.of(config)
    pipeline = build_pipeline(config, stop_after_data)
    kind = runner or config.runner.kind
    handler = ProgressPrinter() if progress else None
    absl_logger = logging.getLogger("absl")
    own_logger = logging.getLogger("visionpipe")
    if handler:
        _quiet_logs()
        absl_logger.setLevel(logging.INFO)
        # Keras' SavedModel export resets the absl logger to WARNING, which would hide the
        # runner's per-component lines after the Trainer; keep its level for this run.
        absl_logger.setLevel = lambda level: None
        absl_logger.addHandler(handler)
        absl_logger.propagate = False
        own_logger.addHandler(handler)
        own_logger.setLevel(logging.INFO)
        own_logger.propagate = False
    try:
        if kind == "beam":
            from tfx.orchestration.beam.beam_dag_runner import BeamDagRunner

            BeamDagRunner().run(pipeline)
        else:
            tfx.orchestration.LocalDagRunner().run(pipeline)
    finally:
        if handler:
            absl_logger.removeHandler(handler)
            own_logger.removeHandler(handler)
            own_logger.propagate = True
            del absl_logger.setLevel
            absl_logger.propagate = True
            paths.durations = dict(handler.durations)
            paths.cached = sorted(name for name, hit in handler.cached.items() if hit)
    return paths


#: config keys naming files or folders the cluster's workers read or write
CLUSTER_PATH_KEYS = ("data.path", "data.images_dir", "data.tfds_data_dir", "data.image_folder",
                     "data.mask_folder", "model.weights", "push.serving_root")


def compile_kubeflow(config, output_file: str, image: str = DEFAULT_IMAGE,
                     pipeline_root: Optional[str] = None) -> Tuple[str, str]:
    """Write a Kubeflow Pipelines v2 / Vertex AI pipeline spec (JSON); compile only.

    Nothing of this machine goes into the spec: the pipeline root (``pipeline_root``, else
    ``runner.output_dir/<name>/pipeline_root``), the data, weights and serving root must be
    URIs (gs://...); generated data is written by ImageExampleGen on the worker. The curated
    schema is written beside the spec and read from ``<root>/schema/``: copy it there (the
    path returned with the spec's). Returns (schema written here, schema URI in the spec)."""
    from tfx import v1 as tfx

    from visionpipe.components.data_validation.schema import (curated_schema,
                                                              write_content_addressed_schema)
    from visionpipe.core.errors import ConfigError
    from visionpipe.core.uris import is_uri
    from visionpipe.datasets import GENERATED_SOURCES

    config.validate()
    root = (pipeline_root or f"{config.runner.output_dir}/{config.name}/pipeline_root").rstrip("/")
    if not is_uri(root):
        raise ConfigError(f"--pipeline_root {root}: a path on this machine; a Kubeflow/Vertex "
                          f"spec needs a URI its workers can read, e.g. gs://bucket/{config.name}")
    generated = config.data.source in GENERATED_SOURCES
    for key in CLUSTER_PATH_KEYS:
        section, name = key.split(".")
        value = getattr(getattr(config, section), name, "")
        if value and not is_uri(value) and not (generated and section == "data"):
            raise ConfigError(f"{key} {value}: a path on this machine; a Kubeflow/Vertex spec "
                              f"needs a URI its workers can read (gs://...)")
    class_names = class_names_for_wiring(config)
    spec_dir = os.path.dirname(os.path.abspath(output_file))
    local_schema = write_content_addressed_schema(
        curated_schema(config.task, class_names, allow_unlabeled=config.data.allow_unlabeled),
        os.path.join(spec_dir, "schema"))
    schema_uri = f"{root}/schema/{os.path.basename(local_schema)}"
    pipeline = create_pipeline(config, root, "", spec_dir, class_names,
                               schema_file=schema_uri, portable=True, image=image)
    # Kubeflow provides its own metadata store.
    pipeline.metadata_connection_config = None
    runner = tfx.orchestration.experimental.KubeflowV2DagRunner(
        config=tfx.orchestration.experimental.KubeflowV2DagRunnerConfig(default_image=image),
        output_dir=spec_dir, output_filename=os.path.basename(output_file))
    runner.run(pipeline, write_out=True)
    return local_schema, schema_uri
