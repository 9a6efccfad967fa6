"""LoadCheck: TF Serving-style infra validation without a TF Serving binary.

Scans the exported SavedModel's ops (visionpipe.serving.model_scan: no file system, py-func or
network ops unless ``allowed_ops`` names them), then loads it in a fresh Python process and
replays its ``assets.extra/tf_serving_warmup_requests``; the Pusher pushes only what passes.
"""
from typing import Optional, Sequence

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from visionpipe.components.load_check import executor


class LoadCheckSpec(ComponentSpec):
    PARAMETERS = {"timeout_seconds": ExecutionParameter(type=int, optional=True),
                  # comma-separated ops the model scan lets through (push.allowed_ops)
                  "allowed_ops": ExecutionParameter(type=str, optional=True)}
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {"blessing": ChannelParameter(type=standard_artifacts.InfraBlessing)}


class LoadCheck(base_component.BaseComponent):
    SPEC_CLASS = LoadCheckSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, model_blessing: Optional[types.BaseChannel] = None,
                 timeout_seconds: int = 300, allowed_ops: Sequence[str] = ()):
        super().__init__(spec=LoadCheckSpec(
            model=model, model_blessing=model_blessing, timeout_seconds=timeout_seconds,
            allowed_ops=",".join(allowed_ops),
            blessing=types.Channel(type=standard_artifacts.InfraBlessing)))
