"""Evaluator: the candidate model (and the latest blessed baseline) scored by its task on the
eval split, judged by the one gate, blessed the TFX way (``ModelBlessing`` with
``current_model_id``, so TFX's latest-blessed resolver and Pusher work with it). A Beam
component: a scorer that runs Beam (TFMA for classification) runs on the pipeline's
``runner.beam_runner`` with its ``runner.beam_args``, like ingestion and statistics."""
from __future__ import annotations

import json
from typing import Optional

from tfx import types
from tfx.dsl.components.base import base_beam_component, executor_spec

from visionpipe.components.evaluator import executor
from visionpipe.components.evaluator.spec import EvaluatorSpec


class Evaluator(base_beam_component.BaseBeamComponent):
    SPEC_CLASS = EvaluatorSpec
    EXECUTOR_SPEC = executor_spec.BeamExecutorSpec(executor.Executor)

    def __init__(self, examples: types.BaseChannel, model: types.BaseChannel, config,
                 baseline_model: Optional[types.BaseChannel] = None, eval_split: str = "eval"):
        outputs = {key: types.Channel(type=parameter.type)
                   for key, parameter in EvaluatorSpec.OUTPUTS.items()}
        super().__init__(spec=EvaluatorSpec(
            examples=examples, model=model, baseline_model=baseline_model,
            config_json=json.dumps(config.to_dict(), sort_keys=True), eval_split=eval_split,
            **outputs))
