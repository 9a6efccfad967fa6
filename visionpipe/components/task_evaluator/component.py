"""TaskEvaluator: evaluates and blesses a model with its task's own metrics (used where TFMA's
label handling does not fit, e.g. multi-label). Outputs the standard ModelEvaluation and
ModelBlessing, so the pusher and the latest-blessed resolver treat it like TFX's Evaluator."""
import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from visionpipe.components.task_evaluator import executor


# What every VisionPipe evaluator takes and gives: the same channels as TFX's Evaluator, so
# the pusher and the latest-blessed-model resolver treat them alike.
EVALUATOR_INPUTS = {
    "examples": ChannelParameter(type=standard_artifacts.Examples),
    "model": ChannelParameter(type=standard_artifacts.Model),
    "baseline_model": ChannelParameter(type=standard_artifacts.Model, optional=True),
}
EVALUATOR_OUTPUTS = {
    "evaluation": ChannelParameter(type=standard_artifacts.ModelEvaluation),
    "blessing": ChannelParameter(type=standard_artifacts.ModelBlessing),
}


def evaluator_output_channels():
    return {key: types.Channel(type=parameter.type) for key, parameter in EVALUATOR_OUTPUTS.items()}


class TaskEvaluatorSpec(ComponentSpec):
    PARAMETERS = {"config_json": ExecutionParameter(type=str)}
    INPUTS = EVALUATOR_INPUTS
    OUTPUTS = EVALUATOR_OUTPUTS


class TaskEvaluator(base_component.BaseComponent):
    SPEC_CLASS = TaskEvaluatorSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config,
                 baseline_model: Optional[types.BaseChannel] = None):
        super().__init__(spec=TaskEvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            config_json=json.dumps(config.to_dict(), sort_keys=True), **evaluator_output_channels()))
