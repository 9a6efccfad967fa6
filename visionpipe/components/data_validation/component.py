"""DataGate: the component that turns ExampleValidator's anomalies, label drift against
the previous run and class imbalance into one pass/fail decision with a JSON report."""
from __future__ import annotations

import json
from typing import Optional, Sequence

import visionpipe  # noqa: F401
from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import artifact, standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from visionpipe.core import features as F
from visionpipe.components.data_validation import executor


class DataValidationReport(artifact.Artifact):
    """A folder holding ``report.json`` (see executor.REPORT_FILE)."""

    TYPE_NAME = "visionpipe.DataValidationReport"


class DataGateSpec(ComponentSpec):
    PARAMETERS = {
        executor.ACCEPT_ANOMALIES_KEY: ExecutionParameter(type=str),  # JSON list of names
        executor.DRIFT_THRESHOLD_KEY: ExecutionParameter(type=float),
        executor.IMBALANCE_RATIO_KEY: ExecutionParameter(type=float),
        executor.LABEL_FEATURE_KEY: ExecutionParameter(type=str),
        executor.CLASS_NAMES_KEY: ExecutionParameter(type=str),  # JSON list; may be empty
    }
    INPUTS = {
        executor.ANOMALIES_KEY: ChannelParameter(type=standard_artifacts.ExampleAnomalies),
        executor.STATISTICS_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics),
        executor.BASELINE_KEY: ChannelParameter(type=standard_artifacts.ExampleStatistics,
                                                optional=True),
        executor.SCHEMA_KEY: ChannelParameter(type=standard_artifacts.Schema, optional=True),
    }
    OUTPUTS = {
        executor.REPORT_KEY: ChannelParameter(type=DataValidationReport),
        # A copy of ``statistics``, published only when the gate passes: the drift
        # baseline of the next run (see wiring.previous_accepted_statistics).
        executor.ACCEPTED_STATISTICS_KEY: ChannelParameter(
            type=standard_artifacts.ExampleStatistics),
    }


class DataGate(base_component.BaseComponent):
    """Fails the run (``DataValidationError``) on any anomaly or label drift that
    ``accept_anomalies`` does not accept; class imbalance is reported as a warning.

    Downstream components that must not run on rejected data should depend on it, e.g.
    ``trainer.add_upstream_node(data_gate)``. TFX deletes the outputs of a failed
    execution, so a rejected run's report is kept in
    ``<pipeline_root>/DataGate/report_rejected/<execution id>/report.json``; the error
    message names it.
    """

    SPEC_CLASS = DataGateSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, anomalies: types.BaseChannel, statistics: types.BaseChannel,
                 baseline_statistics: Optional[types.BaseChannel] = None,
                 schema: Optional[types.BaseChannel] = None,
                 accept_anomalies: Sequence[str] = (), drift_linf_threshold: float = 0.25,
                 imbalance_ratio_warn: float = 3.0, label_feature: str = F.LABEL_TEXT,
                 class_names: Sequence[str] = ()):
        """
        Args:
          anomalies: ExampleValidator's ``anomalies``.
          statistics: this run's ``ExampleStatistics``.
          baseline_statistics: the statistics of the last accepted run, e.g.
            ``wiring.previous_accepted_statistics()``; with none, drift is not checked.
          schema: the schema the anomalies were found with; the drift check starts from it
            (otherwise from a schema inferred from the baseline).
          accept_anomalies: names of findings to let pass (see ``checks`` for the forms).
          drift_linf_threshold: largest accepted L-infinity distance between the label
            distributions of this run and the baseline, per split.
          imbalance_ratio_warn: max/min class count ratio above which the report warns.
          label_feature: the string feature whose distribution is checked.
          class_names: the expected classes (a class without examples is then reported).
        """
        if drift_linf_threshold <= 0:
            raise ValueError(f"drift_linf_threshold must be positive, got {drift_linf_threshold}")
        spec = DataGateSpec(
            anomalies=anomalies, statistics=statistics, baseline_statistics=baseline_statistics,
            schema=schema,
            accept_anomalies=json.dumps(list(accept_anomalies)),
            drift_linf_threshold=float(drift_linf_threshold),
            imbalance_ratio_warn=float(imbalance_ratio_warn),
            label_feature=label_feature,
            class_names=json.dumps(list(class_names)),
            report=types.Channel(type=DataValidationReport),
            accepted_statistics=types.Channel(type=standard_artifacts.ExampleStatistics))
        super().__init__(spec=spec)
