"""DataGate executor: read anomalies and statistics, check drift and imbalance, write
``report.json``, and raise ``DataValidationError`` for what was not accepted."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import visionpipe  # noqa: F401
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils

from visionpipe.components.data_validation import checks
from visionpipe.components.rejected import rejected_report_dir

ANOMALIES_KEY = "anomalies"
STATISTICS_KEY = "statistics"
BASELINE_KEY = "baseline_statistics"
SCHEMA_KEY = "schema"
REPORT_KEY = "report"
ACCEPTED_STATISTICS_KEY = "accepted_statistics"
ACCEPT_ANOMALIES_KEY = "accept_anomalies"
DRIFT_THRESHOLD_KEY = "drift_linf_threshold"
IMBALANCE_RATIO_KEY = "imbalance_ratio_warn"
LABEL_FEATURE_KEY = "label_feature"
CLASS_NAMES_KEY = "class_names"

REPORT_FILE = "report.json"
ANOMALIES_FILE = "SchemaDiff.pb"  # what ExampleValidator writes in each Split-<name>/


class DataValidationError(RuntimeError):
    """The data failed validation; the message lists each finding and how to accept it."""


def _gfile():
    import tensorflow as tf

    return tf.io.gfile


def read_split_anomalies(anomalies_artifact: types.Artifact, split: str):
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    path = os.path.join(artifact_utils.get_split_uri([anomalies_artifact], split), ANOMALIES_FILE)
    if not _gfile().exists(path):
        raise FileNotFoundError(f"ExampleValidator output has no {ANOMALIES_FILE} for split "
                                f"{split!r}: {path}")
    with _gfile().GFile(path, "rb") as handle:
        return anomalies_pb2.Anomalies.FromString(handle.read())


def read_split_statistics(statistics_artifact: types.Artifact, split: str):
    from tfx.components.statistics_gen import stats_artifact_utils

    return stats_artifact_utils.load_statistics(statistics_artifact, split).proto()


def _read_schema(schema_artifacts: List[types.Artifact]):
    if not schema_artifacts:
        return None
    from tfx.utils import io_utils

    uri = artifact_utils.get_single_uri(schema_artifacts)
    return io_utils.SchemaReader().read(io_utils.get_only_uri_in_dir(uri))


def _split_names(artifact: types.Artifact) -> List[str]:
    return artifact_utils.decode_split_names(artifact.split_names)


def evaluate(anomalies_artifact: types.Artifact, statistics_artifact: types.Artifact,
             baseline_artifact: Optional[types.Artifact], schema, accept: List[str],
             drift_threshold: float, imbalance_ratio: float, label_feature: str,
             class_names: List[str]) -> Dict[str, Any]:
    """Every check of the gate; returns the report (``report["passed"]`` is the verdict)."""
    findings: List[checks.Finding] = []
    for split in _split_names(anomalies_artifact):
        findings.extend(checks.findings_from_anomalies(
            read_split_anomalies(anomalies_artifact, split), split))

    imbalance, drift = {}, {}
    baseline_splits = set(_split_names(baseline_artifact)) if baseline_artifact else set()
    for split in _split_names(statistics_artifact):
        current = read_split_statistics(statistics_artifact, split)
        imbalance[split] = checks.class_imbalance(
            checks.value_counts(current, label_feature), class_names, imbalance_ratio)
        if baseline_artifact is None:
            drift[split] = {"skipped": "no baseline statistics (first run)"}
        elif split not in baseline_splits:
            drift[split] = {"skipped": f"the baseline has no split {split!r}"}
        else:
            result = checks.label_drift(
                current, read_split_statistics(baseline_artifact, split), label_feature,
                drift_threshold, split, schema)
            findings.extend(result.pop("findings"))
            if result["linf"] is None:
                result["skipped"] = f"{label_feature} is missing from this run or the baseline"
            drift[split] = result

    unused = checks.apply_accept_rules(findings, accept)
    failures = [f for f in findings if f.accepted_by is None]
    warnings = [f"split {split!r}: {result['warning']}"
                for split, result in imbalance.items() if result["warning"]]
    warnings += [f"data.accept_anomalies entry {rule!r} matched no finding" for rule in unused]
    return {
        "passed": not failures,
        "failures": [f.to_dict() for f in failures],
        "accepted": [f.to_dict() for f in findings if f.accepted_by is not None],
        "drift": drift,
        "imbalance": imbalance,
        "warnings": warnings,
        "baseline_statistics": baseline_artifact.uri if baseline_artifact else None,
        "accept_anomalies": accept,
    }


def failure_message(report: Dict[str, Any], report_path: str) -> str:
    failures = report["failures"]
    lines = [f"data validation failed: {len(failures)} finding(s) not accepted "
             f"(report: {report_path})"]
    for failure in failures:
        lines.append(f"  - split {failure['split']!r}, {failure['feature']}: "
                     f"{failure['reason']}: {failure['description']}")
    keys = list(dict.fromkeys(f["accept_key"] for f in failures))
    accepted = list(dict.fromkeys(report["accept_anomalies"] + keys))
    lines.append("If the data is right, accept them with the override "
                 f"data.accept_anomalies=[{','.join(accepted)}]")
    return "\n".join(lines)


def _write_report(report: Dict[str, Any], directory: str) -> str:
    _gfile().makedirs(directory)
    path = os.path.join(directory, REPORT_FILE)
    with _gfile().GFile(path, "w") as handle:
        handle.write(json.dumps(report, indent=1, sort_keys=True))
    return path


def _publish_accepted_statistics(statistics: types.Artifact, accepted: types.Artifact) -> None:
    """Copy this run's statistics to the gate's output, which exists only for runs that
    passed, so the next run's drift baseline is the last accepted data."""
    from tfx.utils import io_utils

    io_utils.copy_dir(statistics.uri, accepted.uri)
    accepted.split_names = statistics.split_names
    accepted.span = statistics.span


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]],
           exec_properties: Dict[str, Any]) -> None:
        self._log_startup(input_dict, output_dict, exec_properties)
        statistics = artifact_utils.get_single_instance(input_dict[STATISTICS_KEY])
        baselines = [a for a in input_dict.get(BASELINE_KEY) or [] if a.uri != statistics.uri]
        # A resolver may hand over several; the newest is the previous run's.
        baseline = max(baselines, key=lambda a: a.id) if baselines else None
        report = evaluate(
            anomalies_artifact=artifact_utils.get_single_instance(input_dict[ANOMALIES_KEY]),
            statistics_artifact=statistics,
            baseline_artifact=baseline,
            schema=_read_schema(input_dict.get(SCHEMA_KEY) or []),
            accept=list(json.loads(exec_properties.get(ACCEPT_ANOMALIES_KEY) or "[]")),
            drift_threshold=float(exec_properties[DRIFT_THRESHOLD_KEY]),
            imbalance_ratio=float(exec_properties[IMBALANCE_RATIO_KEY]),
            label_feature=exec_properties[LABEL_FEATURE_KEY],
            class_names=list(json.loads(exec_properties.get(CLASS_NAMES_KEY) or "[]")),
        )
        report_artifact = artifact_utils.get_single_instance(output_dict[REPORT_KEY])
        report_artifact.set_int_custom_property("passed", int(report["passed"]))
        for warning in report["warnings"]:
            logging.warning("DataGate: %s", warning)
        if not report["passed"]:
            report_path = _write_report(report, rejected_report_dir(report_artifact.uri))
            raise DataValidationError(failure_message(report, report_path))
        report_path = _write_report(report, report_artifact.uri)
        _publish_accepted_statistics(
            statistics, artifact_utils.get_single_instance(output_dict[ACCEPTED_STATISTICS_KEY]))
        logging.info("DataGate passed (%d accepted finding(s)); report: %s",
                     len(report["accepted"]), report_path)
