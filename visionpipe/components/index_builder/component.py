"""IndexBuilder: the ``index_builder`` pipeline stage (``Task.pipeline_stages``). After the
Evaluator, it embeds the training split (the gallery) with the exported model, builds a faiss
index of ``embedding.index`` kind, reports its recall@k against exact search and its size,
and hands the index folder to the Pusher, which ships it in the model's version folder."""
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec
from tfx.types import standard_artifacts
from tfx.types.component_spec import ChannelParameter, ComponentSpec, ExecutionParameter

from visionpipe.components import stages
from visionpipe.components.index_builder import executor


class IndexBuilderSpec(ComponentSpec):
    PARAMETERS = {executor.CONFIG_KEY: ExecutionParameter(type=str)}
    INPUTS = {
        executor.EXAMPLES_KEY: ChannelParameter(type=standard_artifacts.Examples),
        executor.MODEL_KEY: ChannelParameter(type=standard_artifacts.Model),
        executor.BLESSING_KEY: ChannelParameter(type=standard_artifacts.ModelBlessing, optional=True),
    }
    OUTPUTS = {executor.INDEX_KEY: ChannelParameter(type=stages.PushFiles)}


class IndexBuilder(base_component.BaseComponent):
    SPEC_CLASS = IndexBuilderSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config_json: str,
                 model_blessing: Optional[types.BaseChannel] = None):
        super().__init__(spec=IndexBuilderSpec(
            examples=examples, model=model, model_blessing=model_blessing, config=config_json,
            index=types.Channel(type=stages.PushFiles)))


@stages.register_stage("index_builder")
def index_builder_stage(config, inputs: stages.StageInputs):
    import json

    builder = IndexBuilder(examples=inputs.examples, model=inputs.model,
                           model_blessing=inputs.blessing,
                           config_json=json.dumps(config.to_dict(), sort_keys=True))
    return builder.with_id("IndexBuilder"), builder.outputs[executor.INDEX_KEY]
