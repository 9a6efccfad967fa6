"""ModelOptimizer: the trained (and blessed) model -> gated TFLite files and a report.

Runs the steps of ``config.optimize``: float32 baseline, dynamic-range / float16 / int8
post-training quantization (int8 repaired by keeping its worst layers in float), QAT when
int8 fails its gate, magnitude pruning and distillation. Each file is evaluated with the
TFLite interpreter on the eval split with the task's metric and blessed only within its
allowed drop; ``optimized.blessed_files`` tells the Pusher which files to ship.
"""
from __future__ import annotations

import json
from typing import Any, Dict, Optional, Union

from tfx import types
from tfx.dsl.components.base import base_component, executor_spec

from visionpipe.components.model_optimizer import executor
from visionpipe.components.model_optimizer.spec import (CONFIG_KEY, EXAMPLES_KEY, MODEL_BLESSING_KEY,
                                                        MODEL_KEY, OPTIMIZED_KEY, ModelOptimizerSpec,
                                                        OptimizedModels)
from visionpipe.core.config import PipelineConfig


class ModelOptimizer(base_component.BaseComponent):
    SPEC_CLASS = ModelOptimizerSpec
    EXECUTOR_SPEC = executor_spec.ExecutorClassSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel,
                 config: Union[PipelineConfig, Dict[str, Any]],
                 model_blessing: Optional[types.BaseChannel] = None):
        if isinstance(config, PipelineConfig):
            config = config.validate().to_dict()
        super().__init__(spec=ModelOptimizerSpec(**{
            EXAMPLES_KEY: examples,
            MODEL_KEY: model,
            MODEL_BLESSING_KEY: model_blessing,
            CONFIG_KEY: json.dumps(config, sort_keys=True),
            OPTIMIZED_KEY: types.Channel(type=OptimizedModels),
        }))
