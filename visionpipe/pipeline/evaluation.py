"""The classification evaluation gate: a TFMA EvalConfig built from ``config.evaluate``.

Metrics: accuracy, top-k, AUC (macro over one-vs-rest), per-class precision/recall, the
multi-class confusion matrix and the example count, sliced overall, per class and by image
size. ``evaluate.thresholds`` are absolute lower bounds; ``evaluate.max_drops`` bound the
change against the latest blessed model (the baseline), which TFX's resolver supplies.
"""
from __future__ import annotations

import json
from typing import Dict

import visionpipe  # noqa: F401
import tensorflow_model_analysis as tfma

from visionpipe import features

# Our metric names -> the Keras metric class TFMA computes under that name.
_KERAS_METRICS = {
    "accuracy": ("SparseCategoricalAccuracy", {}),
    "top_k_accuracy": ("SparseTopKCategoricalAccuracy", None),  # k filled from the task
}
PREDICTION_KEY = "scores"


def _overall_threshold(config, name: str):
    lower = config.evaluate.thresholds.get(name)
    drop = config.evaluate.max_drops.get(name)
    if lower is None and drop is None:
        return []
    kwargs = {}
    if lower is not None:
        kwargs["value_threshold"] = tfma.GenericValueThreshold(lower_bound={"value": lower})
    if drop is not None:
        kwargs["change_threshold"] = tfma.GenericChangeThreshold(
            direction=tfma.MetricDirection.HIGHER_IS_BETTER, absolute={"value": -drop})
    # The gate judges the overall slice; per-class and per-size slices are reported, not gated.
    return [tfma.PerSliceMetricThreshold(slicing_specs=[tfma.SlicingSpec()],
                                         threshold=tfma.MetricThreshold(**kwargs))]


GATED_METRICS = sorted(set(_KERAS_METRICS) | {"macro_auc"})


def build_eval_config(task) -> tfma.EvalConfig:
    config = task.config
    unknown = (set(config.evaluate.thresholds) | set(config.evaluate.max_drops)) - set(GATED_METRICS)
    if unknown:
        from visionpipe.pipeline.config import ConfigError

        raise ConfigError(f"evaluate.thresholds/max_drops: unknown metric(s) {sorted(unknown)}; "
                          f"the classification gate knows {GATED_METRICS}")

    metrics = [tfma.MetricConfig(class_name="ExampleCount"),
               tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot")]
    for name, (class_name, extra) in _KERAS_METRICS.items():
        extra = {"k": task.top_k} if extra is None else extra
        metrics.append(tfma.MetricConfig(class_name=class_name,
                                         config=json.dumps({"name": name, **extra}),
                                         per_slice_thresholds=_overall_threshold(config, name)))
    per_class = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="Precision"), tfma.MetricConfig(class_name="Recall"),
                 tfma.MetricConfig(class_name="AUC", config=json.dumps({"name": "auc"}))],
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(task.num_classes))}))
    macro = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="AUC", config=json.dumps({"name": "macro_auc"}),
                                   per_slice_thresholds=_overall_threshold(config, "macro_auc"))],
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(task.num_classes))}),
        aggregate=tfma.AggregationOptions(
            macro_average=True, class_weights={i: 1.0 for i in range(task.num_classes)}))
    slices = [tfma.SlicingSpec()]
    if config.evaluate.slice_by_class:
        slices.append(tfma.SlicingSpec(feature_keys=[features.LABEL_TEXT]))
    if config.evaluate.slice_by_image_size:
        slices.append(tfma.SlicingSpec(feature_keys=[features.HEIGHT, features.WIDTH]))
    return tfma.EvalConfig(
        model_specs=[tfma.ModelSpec(signature_name="serving_examples", label_key=features.LABEL,
                                    prediction_key=PREDICTION_KEY)],
        slicing_specs=slices,
        metrics_specs=[tfma.MetricsSpec(metrics=metrics), per_class, macro])


def tfma_evaluator(task, examples, model, baseline_model):
    from tfx.components import Evaluator

    return Evaluator(examples=examples, model=model, baseline_model=baseline_model,
                     eval_config=build_eval_config(task), example_splits=["eval"])


def validation_summary(evaluation_uri: str) -> Dict:
    """{'blessed': bool, 'failures': [...], 'metrics': {...}} from an Evaluator output."""
    result = tfma.load_validation_result(evaluation_uri)
    failures = []
    for failure in result.metric_validations_per_slice:
        slice_name = tfma.slicer.stringify_slice_key(
            tfma.slicer.deserialize_slice_key(failure.slice_key)) if failure.HasField(
                "slice_key") else "Overall"
        for f in failure.failures:
            failures.append(f"{f.metric_key.name} on {slice_name}: {f.message or 'threshold not met'}"
                            f" (value {_value(f.metric_value)})")
    if result.missing_slices:
        failures.append(f"missing slices: {list(result.missing_slices)}")
    return {"blessed": bool(result.validation_ok), "failures": failures,
            "metrics": overall_metrics(evaluation_uri)}


def _value(metric_value) -> str:
    if metric_value.HasField("double_value"):
        return f"{metric_value.double_value.value:.4f}"
    return str(metric_value).strip().replace("\n", " ")[:80]


def overall_metrics(evaluation_uri: str) -> Dict[str, float]:
    """Scalar metrics on the overall slice of the candidate model (baseline diffs dropped)."""
    out: Dict[str, float] = {}
    try:
        results = tfma.load_eval_result(evaluation_uri)
    except Exception:  # noqa: BLE001 - an evaluation without results has no metrics to show
        return out
    for slice_key, per_output in results.slicing_metrics:
        if slice_key:
            continue
        for metrics in per_output.values():
            for sub_key, values in metrics.items():
                for name, value in values.items():
                    if isinstance(value, dict) and "doubleValue" in value:
                        label = name if not sub_key else f"{name}[{sub_key}]"
                        out[label] = float(value["doubleValue"])
    return out
