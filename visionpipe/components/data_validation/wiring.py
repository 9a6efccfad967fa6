"""The data-validation part of a VisionPipe pipeline, ready to add to ``create_pipeline``."""
from __future__ import annotations

from typing import NamedTuple, Optional, Sequence

import visionpipe  # noqa: F401
from tfx import types
from tfx.components import ExampleValidator
from tfx.components.schema_gen.import_schema_gen.component import ImportSchemaGen
from tfx.dsl.input_resolution.strategies.latest_artifact_strategy import LatestArtifactStrategy

from visionpipe.core.registry import task_class
from visionpipe.components.data_validation.component import DataGate
from visionpipe.components.data_validation.schema import (
    curated_schema, image_stats_options, write_content_addressed_schema)
from visionpipe.components.data_validation.statistics_gen import ImageStatisticsGen


class ValidationComponents(NamedTuple):
    statistics_gen: ImageStatisticsGen
    schema_gen: ImportSchemaGen
    example_validator: ExampleValidator
    data_gate: DataGate


DATA_GATE_ID = "DataGate"
STATISTICS_GEN_ID = "StatisticsGen"
PREVIOUS_STATISTICS_ID = "previous_accepted_statistics"


class LatestOrNoArtifactStrategy(LatestArtifactStrategy):
    """The newest artifact of each channel, or none yet: TFX's LatestArtifactStrategy returns
    None when a channel is empty, which the local runners log as an input-resolution ERROR and
    record in ML Metadata as a FAILED resolver execution on every first run."""

    def resolve_artifacts(self, store, input_dict):
        return self._resolve(input_dict)


def previous_accepted_statistics(portable: bool = False):
    """A Resolver node for the drift baseline: the newest statistics a DataGate accepted.

    Not the newest ExampleStatistics: a rejected run's statistics are published too, and
    comparing against them would let a bad run become the reference for the next one. On
    the first run it resolves nothing and the gate skips the drift check. Use
    ``.outputs["statistics"]``. ``portable``: TFX's own LatestArtifactStrategy, the only
    one (with LatestBlessedModelStrategy) the Kubeflow V2 compiler turns into a query.
    """
    from tfx import v1 as tfx

    return tfx.dsl.Resolver(
        strategy_class=LatestArtifactStrategy if portable else LatestOrNoArtifactStrategy,
        statistics=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ExampleStatistics,
                                   producer_component_id=DATA_GATE_ID,
                                   output_key="accepted_statistics"),
    ).with_id(PREVIOUS_STATISTICS_ID)


def expected_class_names(config) -> list:
    """``data.class_names``, else the classes a generated source is known to produce,
    else none (the classes are then discovered and the schema leaves labels open)."""
    if config.data.class_names:
        return list(config.data.class_names)
    from visionpipe.datasets.generated import generated_class_names

    return generated_class_names(config.data)


def validation_components(examples: types.BaseChannel, config,
                          baseline_statistics: Optional[types.BaseChannel] = None, *,
                          schema_file: Optional[str] = None, schema_dir: Optional[str] = None,
                          class_names: Optional[Sequence[str]] = None) -> ValidationComponents:
    """StatisticsGen (image statistics on splits of any size, ``ImageStatisticsGen``) ->
    ImportSchemaGen -> ExampleValidator -> DataGate.

    The schema is ``schema_file`` (a curated schema kept with the project) or, without
    one, ``curated_schema`` for the config's task and classes written to ``schema_dir``.
    ``baseline_statistics`` is the drift baseline, normally
    ``previous_accepted_statistics().outputs["statistics"]`` (None: no drift check). The gate applies ``data.accept_anomalies``, ``data.drift_linf_threshold`` and
    ``data.imbalance_ratio_warn``. Make training depend on ``result.data_gate``.
    """
    data = config.data
    names = list(class_names) if class_names is not None else expected_class_names(config)
    if schema_file is None:
        if schema_dir is None:
            raise ValueError("validation_components needs schema_file (a curated schema) or "
                             "schema_dir (where the schema derived from the config is written)")
        schema_file = write_content_addressed_schema(
            curated_schema(config.task, names, allow_unlabeled=data.allow_unlabeled), schema_dir)
    statistics_gen = ImageStatisticsGen(examples=examples,
                                        stats_options=image_stats_options()).with_id(STATISTICS_GEN_ID)
    schema_gen = ImportSchemaGen(schema_file=schema_file)
    example_validator = ExampleValidator(statistics=statistics_gen.outputs["statistics"],
                                         schema=schema_gen.outputs["schema"])
    data_gate = DataGate(
        anomalies=example_validator.outputs["anomalies"],
        statistics=statistics_gen.outputs["statistics"],
        baseline_statistics=baseline_statistics,
        schema=schema_gen.outputs["schema"],
        accept_anomalies=data.accept_anomalies,
        drift_linf_threshold=data.drift_linf_threshold,
        imbalance_ratio_warn=data.imbalance_ratio_warn,
        label_feature=task_class(config.task).label_feature,
        class_names=names).with_id(DATA_GATE_ID)
    return ValidationComponents(statistics_gen, schema_gen, example_validator, data_gate)
