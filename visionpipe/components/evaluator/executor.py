"""Evaluator executor: load what the task needs once, ask the task for its metrics and its
trivial predictor's, judge them with the one gate, write the report and the blessing."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List

import visionpipe  # noqa: F401
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_beam_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from visionpipe.components.evaluator import gate, spec

TRAIN_SPLIT = "train"


class Executor(base_beam_executor.BaseBeamExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        from visionpipe.core.config import config_from_dict
        from visionpipe.core.examples import read_class_names, split_files
        from visionpipe.tasks import get_task

        config = config_from_dict(json.loads(exec_properties[spec.CONFIG_KEY])).validate()
        split = exec_properties.get(spec.EVAL_SPLIT_KEY) or "eval"
        examples = artifact_utils.get_single_instance(input_dict[spec.EXAMPLES_KEY])
        task = get_task(config, read_class_names(examples.uri))
        eval_files = split_files(examples.uri, split)
        model = artifact_utils.get_single_instance(input_dict[spec.MODEL_KEY])
        exports = {"candidate": path_utils.serving_model_path(model.uri)}
        baseline_model = (input_dict.get(spec.BASELINE_MODEL_KEY) or [None])[0]
        if baseline_model is not None:
            exports["baseline"] = path_utils.serving_model_path(baseline_model.uri)
        evaluation = artifact_utils.get_single_instance(output_dict[spec.EVALUATION_KEY])

        metrics = task.evaluate_exports(exports, eval_files, evaluation.uri,
                                         beam_pipeline_args=self._beam_pipeline_args or [])
        trivial = task.trivial_metrics(eval_files, split_files(examples.uri, TRAIN_SPLIT))
        ev = config.evaluate
        result = gate.judge(metrics["candidate"], gate_metric=task.gate_metric,
                            thresholds=ev.thresholds, max_drops=ev.max_drops, trivial=trivial,
                            min_margin_over_trivial=ev.min_margin_over_trivial,
                            baseline=metrics.get("baseline"))
        robust = None
        if ev.robustness.enabled:
            from visionpipe.components.evaluator import robustness

            robust = robustness.evaluate(task, exports["candidate"], eval_files, ev.robustness,
                                         output_dir=evaluation.uri)
            result = gate.GateResult(blessed=result.blessed and not robust["failures"],
                                     failures=result.failures + robust["failures"],
                                     notes=result.notes + robust["notes"], rows=result.rows)
            logging.info("Evaluator robustness (%s): %s", task.gate_metric, robust["metrics"])
        report = {
            "task": task.name, "split": split, "gate_metric": task.gate_metric,
            "blessed": result.blessed, "failures": result.failures, "notes": result.notes,
            "gate": result.rows, "thresholds": ev.thresholds, "max_drops": ev.max_drops,
            "min_margin_over_trivial": ev.min_margin_over_trivial,
            "metrics": _json_safe(metrics["candidate"]), "trivial": _json_safe(trivial),
            "baseline": _json_safe(metrics["baseline"]) if "baseline" in metrics else None,
            "robustness": robust,
            "details": task.evaluation_details(exports["candidate"], eval_files,
                                               output_dir=evaluation.uri),
        }
        logging.info("Evaluator: %s", "\n".join(gate.format_table(result.rows)))
        io_utils.write_string_file(os.path.join(evaluation.uri, spec.REPORT_FILE),
                                   json.dumps(_json_safe(report), indent=2))
        _write_blessing(artifact_utils.get_single_instance(output_dict[spec.BLESSING_KEY]),
                        result, model, baseline_model)


def _write_blessing(blessing, result: gate.GateResult, model, baseline_model) -> None:
    """What TFX's own Evaluator writes, so its resolvers and Pusher read ours alike."""
    name = constants.BLESSED_FILE_NAME if result.blessed else constants.NOT_BLESSED_FILE_NAME
    io_utils.write_string_file(os.path.join(blessing.uri, name), "\n".join(result.failures))
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                     constants.BLESSED_VALUE if result.blessed
                                     else constants.NOT_BLESSED_VALUE)
    blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
    blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
    if baseline_model is not None:
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                            baseline_model.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                         baseline_model.id)


def _json_safe(value):
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(v) for v in value]
    return value
