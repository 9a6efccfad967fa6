"""Classification's scorer: TensorFlow Model Analysis on the ``serving_examples`` signature.

Metrics: accuracy, top-k, AUC (macro over one-vs-rest), per-class AUC, the multi-class
confusion matrix and the example count, sliced overall, per class and by image size; from the
overall slice's confusion matrix (the arg-max class), balanced accuracy, macro F1 and per-class
precision/recall (``confusion.confusion_metrics``, as the TFLite scores compute them). The gate (thresholds, change vs the baseline, the trivial floor) is the Evaluator's;
TFMA only computes, and its results stay in the evaluation artifact for TFMA's own views.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow_model_analysis as tfma

from visionpipe.core import features
from visionpipe.tasks.classification import confusion

# Our metric names -> the Keras metric class TFMA computes under that name.
_KERAS_METRICS = {
    "accuracy": ("SparseCategoricalAccuracy", {}),
    "top_k_accuracy": ("SparseTopKCategoricalAccuracy", None),  # k filled from the task
}
PREDICTION_KEY = "scores"


GATED_METRICS = sorted(set(_KERAS_METRICS) | {"macro_auc", "balanced_accuracy", "macro_f1",
                                               "precision/", "recall/"})


def build_eval_config(task) -> tfma.EvalConfig:
    config = task.config
    metrics = [tfma.MetricConfig(class_name="ExampleCount"),
               tfma.MetricConfig(class_name="MultiClassConfusionMatrixPlot")]
    for name, (class_name, extra) in _KERAS_METRICS.items():
        extra = {"k": task.top_k} if extra is None else extra
        metrics.append(tfma.MetricConfig(class_name=class_name,
                                         config=json.dumps({"name": name, **extra})))
    per_class = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="AUC", config=json.dumps({"name": "auc"}))],
        binarize=tfma.BinarizationOptions(class_ids={"values": list(range(task.num_classes))}))
    macro = tfma.MetricsSpec(
        metrics=[tfma.MetricConfig(class_name="AUC", config=json.dumps({"name": "macro_auc"}))],
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


def evaluate_exports(task, export_dirs, eval_files, work_dir,
                     beam_pipeline_args: Sequence[str] = ()) -> Dict[str, Dict[str, float]]:
    """TFMA over the eval split for each export, on the Beam runner of ``beam_pipeline_args``;
    {role: overall-slice metrics}. Each role's full results (slices, confusion matrix) stay
    under ``<work_dir>/tfma/<role>``."""
    from apache_beam.options.pipeline_options import PipelineOptions

    eval_config = build_eval_config(task)
    pattern = os.path.join(os.path.dirname(eval_files[0]), "*")
    results = {}
    for role, export_dir in export_dirs.items():
        output = os.path.join(work_dir, "tfma", role)
        shared = tfma.default_eval_shared_model(eval_saved_model_path=export_dir,
                                                eval_config=eval_config)
        tfma.run_model_analysis(eval_shared_model=shared, eval_config=eval_config,
                                data_location=pattern, file_format="tfrecords",
                                output_path=output,
                                pipeline_options=PipelineOptions(list(beam_pipeline_args)))
        results[role] = overall_metrics(output, task.class_names)
    return results


def overall_metrics(evaluation_uri: str, class_names: Sequence[str]) -> Dict[str, float]:
    """Scalar metrics on the overall slice of the candidate model (baseline diffs dropped);
    a per-class metric is named ``<metric>/<class name>`` (TFMA's sub key is ``classId:N``)."""
    out: Dict[str, float] = {}
    try:
        results = tfma.load_eval_result(evaluation_uri)
    except Exception:  # noqa: BLE001 - an evaluation without results has no metrics to show
        return out
    for slice_key, per_output in results.plots:
        if not slice_key:
            matrix = _confusion_matrix(per_output, len(class_names))
            if matrix is not None:
                out.update(confusion.confusion_metrics(matrix, class_names))
    for slice_key, per_output in results.slicing_metrics:
        if slice_key:
            continue
        for metrics in per_output.values():
            for sub_key, values in metrics.items():
                for name, value in values.items():
                    # TFMA names an aggregated metric "<AggregationOptions text>_<name>"
                    # (e.g. "macro_average: true\n_macro_auc"): keep the configured name
                    name = name.rsplit("\n_", 1)[-1]
                    if sub_key and name == "macro_auc":
                        continue  # the macro average's per-class parts: auc/<class> again
                    if isinstance(value, dict) and "doubleValue" in value:
                        label = f"{name}/{_class_of(sub_key, class_names)}" if sub_key else name
                        out[label] = float(value["doubleValue"])
    return out


def _confusion_matrix(plots_by_output, num_classes: int):
    """The [truth, prediction] counts of TFMA's MultiClassConfusionMatrixPlot at threshold 0
    (each example counted at its arg-max class); None when the plot is missing. Proto3 JSON
    leaves out zeros, so an absent class id is class 0."""
    for by_sub_key in plots_by_output.values():
        plot = by_sub_key.get("", {}).get("multiClassConfusionMatrixAtThresholds")
        if not plot:
            continue
        matrix = np.zeros((num_classes, num_classes))
        for entry in plot["matrices"][0].get("entries", []):
            actual, predicted = entry.get("actualClassId", 0), entry.get("predictedClassId", 0)
            if 0 <= actual < num_classes and 0 <= predicted < num_classes:
                matrix[actual, predicted] += entry.get("numWeightedExamples", 0.0)
        return matrix
    return None


def _class_of(sub_key: str, class_names: Sequence[str]) -> str:
    """TFMA's sub key ``classId:3`` -> the class name at id 3."""
    kind, _, index = sub_key.partition(":")
    if kind != "classId" or not index.isdigit() or int(index) >= len(class_names):
        return sub_key
    return class_names[int(index)]
