"""ImageExampleGen executor: runs the shared ingest Beam pipeline on TFX's Beam settings."""
from __future__ import annotations

import copy
import json
import tempfile
from typing import Any, Dict, List

import visionpipe  # noqa: F401
from tfx import types
from tfx.components.util import examples_utils
from tfx.dsl.components.base import base_beam_executor
from tfx.proto import example_gen_pb2
from tfx.types import artifact_utils

from visionpipe.components.image_example_gen import spec
from visionpipe.components.image_example_gen.ingest import IngestResult, check_result, run_ingest
from visionpipe.components.image_example_gen.report import IngestError, write_report
from visionpipe.components.rejected import rejected_report_dir
from visionpipe.components.image_example_gen import spans
from visionpipe.core.config import config_from_dict


def record_result(examples: types.Artifact, report_artifact: types.Artifact,
                  result: IngestResult) -> None:
    examples.split_names = artifact_utils.encode_split_names(result.split_names)
    examples_utils.set_payload_format(examples, example_gen_pb2.PayloadFormat.FORMAT_TF_EXAMPLE)
    examples_utils.set_file_format(examples, "tfrecords_gzip")
    for split, count in result.counts_by_split.items():
        examples.set_int_custom_property(spec.SPLIT_COUNT_PROPERTY.format(split=split), count)
        examples.set_int_custom_property(spec.SPLIT_OBJECTS_PROPERTY.format(split=split),
                                         result.objects_by_split.get(split, 0))
    for artifact in (examples, report_artifact):
        artifact.set_int_custom_property(spec.QUARANTINED_COUNT_PROPERTY, result.quarantined)
        artifact.set_int_custom_property(spec.DUPLICATE_COUNT_PROPERTY, result.duplicates)
        artifact.set_int_custom_property(spec.TOTAL_INPUTS_PROPERTY, result.total_inputs)


def _generated_here(config):
    """Local runs write generated data (shapes, digits) before wiring and hand over a folder;
    a Kubeflow/Vertex spec carries the generated source itself, written here on the worker."""
    from visionpipe.datasets import GENERATED_SOURCES
    from visionpipe.tasks import prepare_generated_source

    if config.data.source not in GENERATED_SOURCES:
        return config
    resolved = copy.deepcopy(config)
    resolved.data.path, resolved.data.source = prepare_generated_source(
        config, tempfile.mkdtemp(prefix="visionpipe-generated-"))
    return resolved


class Executor(base_beam_executor.BaseBeamExecutor):
    """Reads config.data with Beam into a TFX Examples artifact and a QuarantineReport."""

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        config = _generated_here(config_from_dict(json.loads(exec_properties[spec.CONFIG_KEY])).validate())
        examples = artifact_utils.get_single_instance(output_dict[spec.EXAMPLES_KEY])
        if exec_properties.get(spec.SPANS_KEY):
            choice = spans.SpanChoice.from_json(exec_properties[spec.SPANS_KEY])
            config.data = spans.with_spans(config.data, choice)
            examples.span = choice.span
            if choice.version is not None:
                examples.version = choice.version
        report_artifact = artifact_utils.get_single_instance(output_dict[spec.QUARANTINE_REPORT_KEY])
        result, report = run_ingest(self._make_beam_pipeline, config, examples.uri, report_artifact.uri)
        record_result(examples, report_artifact, result)
        if exec_properties.get(spec.INPUT_FINGERPRINT_KEY):
            examples.set_string_custom_property(spec.INPUT_FINGERPRINT_PROPERTY,
                                                exec_properties[spec.INPUT_FINGERPRINT_KEY])
        try:
            check_result(report, result, config)
        except IngestError:
            # TFX deletes this execution's outputs on failure: keep the report where the
            # error message can point to it.
            kept = write_report(report, rejected_report_dir(report_artifact.uri))
            check_result(report, result, config, report_path=kept)
