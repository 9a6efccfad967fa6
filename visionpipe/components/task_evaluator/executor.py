"""TaskEvaluator executor: the task's own metrics on the eval split, gated like TFMA's.

Runs ``serving_default`` of the candidate (and of the latest blessed baseline, if any) on the
encoded images of the eval split, scores them with ``task.metrics_from_predictions`` and
applies ``evaluate.thresholds`` (absolute) and ``evaluate.max_drops`` (vs the baseline).
"""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional, Tuple

from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

SUMMARY_FILE = "summary.json"
BATCH = 64


def evaluate_export(export_dir: str, task, files) -> Dict[str, float]:
    import numpy as np
    import tensorflow as tf

    from visionpipe import features
    from visionpipe.models import data

    serve = tf.saved_model.load(export_dir).signatures["serving_default"]
    probabilities, targets = [], []
    for batch in data.records(files).batch(BATCH):
        encoded = features.parse_examples(batch, [features.ENCODED])[features.ENCODED]
        outputs = serve(images=encoded)
        probabilities.append(outputs["probabilities"].numpy())
        if "thresholds" in outputs:  # score with the decision rule the model actually serves
            task.thresholds = outputs["thresholds"].numpy()[0]
        targets.extend(targets_of(task, batch))
    return task.metrics_from_predictions(np.concatenate(probabilities), np.stack(targets))


def targets_of(task, serialized_batch):
    """Per-example targets; label lists vary in length and dense batch parsing would pad
    them with class 0, so each record is parsed on its own."""
    from visionpipe import features

    return [task.target(features.parse_single(record, [features.LABEL])[features.LABEL]).numpy()
            for record in serialized_batch]


def gate(candidate: Dict[str, float], baseline: Optional[Dict[str, float]],
         thresholds: Dict[str, float], max_drops: Dict[str, float]) -> Tuple[bool, List[str]]:
    failures = []
    for name, lower in thresholds.items():
        if name not in candidate:
            failures.append(f"{name}: not computed by this task (has {sorted(candidate)})")
        elif candidate[name] < lower:
            failures.append(f"{name}: {candidate[name]:.4f} is below the threshold {lower}")
    if baseline:
        for name, drop in max_drops.items():
            if name in candidate and name in baseline and candidate[name] < baseline[name] - drop:
                failures.append(f"{name}: {candidate[name]:.4f} dropped more than {drop} from the "
                                f"latest blessed model's {baseline[name]:.4f}")
    return not failures, failures


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        from visionpipe.models import data
        from visionpipe.models.tasks import get_task
        from visionpipe.pipeline.config import config_from_dict
        from visionpipe.components.image_example_gen.executor import read_class_names

        config = config_from_dict(json.loads(exec_properties["config_json"]))
        examples = artifact_utils.get_single_instance(input_dict["examples"])
        task = get_task(config, read_class_names(examples.uri))
        files = data.split_files(examples.uri, "eval")
        model = artifact_utils.get_single_instance(input_dict["model"])
        candidate = evaluate_export(path_utils.serving_model_path(model.uri), task, files)
        baseline = None
        if input_dict.get("baseline_model"):
            baseline_uri = input_dict["baseline_model"][0].uri
            baseline = evaluate_export(path_utils.serving_model_path(baseline_uri), task, files)
        blessed, failures = gate(candidate, baseline, config.evaluate.thresholds,
                                 config.evaluate.max_drops)
        summary = {"blessed": blessed, "failures": failures, "metrics": candidate,
                   "baseline_metrics": baseline}
        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        io_utils.write_string_file(os.path.join(evaluation.uri, SUMMARY_FILE),
                                   json.dumps(summary, indent=2))
        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        blessing.set_int_custom_property("blessed", int(blessed))
        io_utils.write_string_file(os.path.join(blessing.uri, "BLESSED" if blessed else "NOT_BLESSED"), "")
