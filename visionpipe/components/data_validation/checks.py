"""The decisions of the data gate, on plain TFDV protos (no TFX artifacts here).

Accepting a finding: ``data.accept_anomalies`` entries name findings in one of three ways,
most specific first:

* ``<feature>:<REASON>`` -- one kind of finding on one feature, e.g.
  ``image/class/text:ENUM_TYPE_UNEXPECTED_STRING_VALUES`` or, for label drift,
  ``image/class/text:COMPARATOR_L_INFTY_HIGH``;
* ``<feature>`` -- every finding on that feature, e.g. ``image/class/label``;
* ``<REASON>`` -- that kind of finding on any feature, e.g. ``SCHEMA_NEW_COLUMN``.

``<REASON>`` is the TFDV anomaly type name (``AnomalyInfo.Type``); findings about the whole
dataset (e.g. too few examples) use the feature name ``dataset``. Each failure message
prints the exact ``<feature>:<REASON>`` entry that would accept it.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Sequence

import visionpipe  # noqa: F401

DATASET = "dataset"
DRIFT_REASON = "COMPARATOR_L_INFTY_HIGH"


@dataclass
class Finding:
    """One anomaly or drift in one split."""

    split: str
    feature: str
    reason: str
    description: str
    source: str  # "schema" (ExampleValidator) | "drift" (against the baseline)
    accepted_by: Optional[str] = None

    @property
    def accept_key(self) -> str:
        return f"{self.feature}:{self.reason}"

    def matches(self, rule: str) -> bool:
        return rule in (self.accept_key, self.feature, self.reason)

    def to_dict(self) -> dict:
        return dict(dataclasses.asdict(self), accept_key=self.accept_key)


def _reason_name(reason_type: int) -> str:
    from tensorflow_metadata.proto.v0 import anomalies_pb2

    return anomalies_pb2.AnomalyInfo.Type.Name(reason_type)


def findings_from_anomalies(anomalies, split: str, source: str = "schema") -> List[Finding]:
    """One finding per anomaly reason of a TFDV ``Anomalies`` proto."""
    found = []
    infos = [(name, info) for name, info in sorted(anomalies.anomaly_info.items())]
    if anomalies.HasField("dataset_anomaly_info"):
        infos.append((DATASET, anomalies.dataset_anomaly_info))
    for feature, info in infos:
        for reason in info.reason:
            found.append(Finding(split=split, feature=feature, reason=_reason_name(reason.type),
                                 description=reason.description.strip(), source=source))
        if not info.reason:
            found.append(Finding(split=split, feature=feature, reason="UNKNOWN_TYPE",
                                 description=info.description.strip(), source=source))
    return found


def apply_accept_rules(findings: Iterable[Finding], rules: Sequence[str]) -> List[str]:
    """Mark each finding with the first rule that accepts it; returns the unused rules."""
    used = set()
    for finding in findings:
        for rule in rules:
            if finding.matches(rule):
                finding.accepted_by = rule
                used.add(rule)
                break
    return [rule for rule in rules if rule not in used]


# ----------------------------------------------------------------------------- statistics
def _dataset(statistics):
    """The single unsliced dataset of a ``DatasetFeatureStatisticsList``."""
    if not statistics.datasets:
        raise ValueError("the statistics hold no dataset")
    return statistics.datasets[0]


def _feature_stats(statistics, feature: str):
    for stats in _dataset(statistics).features:
        name = "/".join(stats.path.step) if stats.path.step else stats.name
        if name == feature:
            return stats
    return None


def value_counts(statistics, feature: str) -> Optional[Dict[str, float]]:
    """How often each value of a string feature occurs (all values of a multi-valued
    feature count), from TFDV's rank histogram; None when the feature is absent."""
    stats = _feature_stats(statistics, feature)
    if stats is None or not stats.HasField("string_stats"):
        return None
    counts = {bucket.label: bucket.sample_count
              for bucket in stats.string_stats.rank_histogram.buckets}
    if not counts:
        counts = {value.value: value.frequency for value in stats.string_stats.top_values}
    return counts


def class_imbalance(counts: Optional[Dict[str, float]], class_names: Sequence[str],
                    ratio_warn: float) -> dict:
    """Count per class and the max/min count ratio; ``warning`` is set when the ratio is
    above ``ratio_warn`` or a known class has no example."""
    counts = dict(counts or {})
    for name in class_names:
        counts.setdefault(name, 0.0)
    result = {"counts": {k: counts[k] for k in sorted(counts)}, "ratio": None, "warning": None}
    if not counts:
        result["warning"] = "no labels found"
        return result
    missing = sorted(name for name, count in counts.items() if count == 0)
    present = [count for count in counts.values() if count > 0]
    ratio = max(present) / min(present) if present else None
    result["ratio"] = ratio
    if missing:
        result["warning"] = f"classes with no example: {missing}"
    elif ratio is not None and ratio > ratio_warn:
        most = max(counts, key=counts.get)
        least = min(counts, key=counts.get)
        result["warning"] = (f"class imbalance {ratio:.2f} > data.imbalance_ratio_warn="
                             f"{ratio_warn:g} ({most}: {counts[most]:g}, {least}: "
                             f"{counts[least]:g}); consider train.class_weights=balanced "
                             "or train.oversample=true")
    return result


def label_drift(current, baseline, feature: str, threshold: float, split: str,
                schema=None) -> dict:
    """L-infinity distance of ``feature``'s value distribution between ``baseline`` and
    ``current`` statistics, computed by TFDV's drift comparator.

    Returns ``{"linf": float | None, "threshold": float, "findings": [Finding]}``; ``linf``
    is None when either side lacks the feature.
    """
    import tensorflow_data_validation as tfdv
    from tensorflow_metadata.proto.v0 import schema_pb2

    result = {"feature": feature, "linf": None, "threshold": threshold, "findings": []}
    if value_counts(current, feature) is None or value_counts(baseline, feature) is None:
        return result
    drift_schema = schema_pb2.Schema()
    drift_schema.CopyFrom(schema if schema is not None else tfdv.infer_schema(baseline))
    feature_schema = tfdv.get_feature(drift_schema, feature)
    feature_schema.ClearField("drift_comparator")
    feature_schema.drift_comparator.infinity_norm.threshold = threshold
    anomalies = tfdv.validate_statistics(current, drift_schema, previous_statistics=baseline)
    for info in anomalies.drift_skew_info:
        if "/".join(info.path.step) == feature:
            for measurement in info.drift_measurements:
                result["linf"] = measurement.value
    result["findings"] = [f for f in findings_from_anomalies(anomalies, split, source="drift")
                          if f.reason == DRIFT_REASON and f.feature == feature]
    return result
