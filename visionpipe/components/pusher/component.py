"""Pusher: pushes a blessed, load-checked model (with its blessed TFLite files and any files a
task's extra stage built) atomically."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from visionpipe.components.model_optimizer.spec import OptimizedModels
from visionpipe.components.pusher import executor
from visionpipe.components.stages import PushFiles


class VisionPusherSpec(ComponentSpec):
    PARAMETERS = {
        "serving_root": ExecutionParameter(type=str),
        "model_name": ExecutionParameter(type=str),
    }
    INPUTS = {
        "model": ChannelParameter(type=standard_artifacts.Model),
        "model_blessing": ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
        "infra_blessing": ChannelParameter(type=standard_artifacts.InfraBlessing, optional=True),
        executor.OPTIMIZED_KEY: ChannelParameter(type=OptimizedModels, optional=True),
        executor.PUSH_FILES_KEY: ChannelParameter(type=PushFiles, optional=True),
    }
    OUTPUTS = {"pushed_model": ChannelParameter(type=standard_artifacts.PushedModel)}


class VisionPusher(base_component.BaseComponent):
    SPEC_CLASS = VisionPusherSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, model: types.BaseChannel, serving_root: str, model_name: str,
                 model_blessing: Optional[types.BaseChannel] = None,
                 infra_blessing: Optional[types.BaseChannel] = None,
                 optimized: Optional[types.BaseChannel] = None,
                 push_files: Optional[types.BaseChannel] = None):
        super().__init__(spec=VisionPusherSpec(
            model=model, model_blessing=model_blessing, infra_blessing=infra_blessing,
            optimized=optimized, push_files=push_files, serving_root=serving_root,
            model_name=model_name,
            pushed_model=types.Channel(type=standard_artifacts.PushedModel)))
