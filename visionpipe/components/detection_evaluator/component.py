"""DetectionEvaluator: scores the candidate (and the baseline, when there is one) on the eval
split with pycocotools through the exported ``serving_default`` signature, and blesses the
candidate when every ``evaluate.thresholds`` entry is met and no ``evaluate.max_drops`` metric
fell further than allowed. Its ``blessing`` is read by TFX's Pusher like the Evaluator's."""
from __future__ import annotations

import json
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types.component_spec import ComponentSpec, ExecutionParameter

from visionpipe.components.detection_evaluator import executor
from visionpipe.components.task_evaluator.component import (EVALUATOR_INPUTS, EVALUATOR_OUTPUTS,
                                                            evaluator_output_channels)


class DetectionEvaluatorSpec(ComponentSpec):
    PARAMETERS = {
        "config_json": ExecutionParameter(type=str),
        "class_names_json": ExecutionParameter(type=str),
        "eval_split": ExecutionParameter(type=str),
    }
    INPUTS = EVALUATOR_INPUTS
    OUTPUTS = EVALUATOR_OUTPUTS


class DetectionEvaluator(base_component.BaseComponent):
    SPEC_CLASS = DetectionEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 config, class_names: Sequence[str],
                 baseline_model: Optional[types.BaseChannel] = None, eval_split: str = "eval"):
        spec = DetectionEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            config_json=json.dumps(config.to_dict()), class_names_json=json.dumps(list(class_names)),
            eval_split=eval_split, **evaluator_output_channels())
        super().__init__(spec=spec)
