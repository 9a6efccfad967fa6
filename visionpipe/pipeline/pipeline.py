"""``create_pipeline()``: the one definition of a VisionPipe run, for every runner.

ImageExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> DataGate
  -> Trainer (run_fn, MirroredStrategy) -> Evaluator (task gate, vs latest blessed)
  -> [ModelOptimizer] -> LoadCheck (fresh process, warm-up requests) -> Pusher (atomic)
"""
from __future__ import annotations

import json
import os
from typing import List, Optional, Sequence

import visionpipe  # noqa: F401
from tfx import v1 as tfx

from visionpipe.components.image_example_gen.component import ImageExampleGen
from visionpipe.components.data_validation.wiring import (previous_accepted_statistics,
                                                          validation_components)
from visionpipe.components.evaluator.component import Evaluator
from visionpipe.components.load_check.component import LoadCheck
from visionpipe.components.model_optimizer.component import ModelOptimizer
from visionpipe.components.pusher.component import VisionPusher
from visionpipe.components.stages import StageInputs, build_stages
from visionpipe.components.trainer import run_fn as trainer_module
from visionpipe.core.config import stage_config
from visionpipe.core.registry import task_class
from visionpipe.core.uris import is_uri

TRAINER_RUN_FN = f"{trainer_module.__name__}.run_fn"


def create_pipeline(config, pipeline_root: str, metadata_path: str, run_dir: str,
                    class_names: Sequence[str], beam_pipeline_args: Optional[List[str]] = None,
                    stop_after_data: bool = False, schema_file: Optional[str] = None,
                    portable: bool = False, image: str = "") -> tfx.dsl.Pipeline:
    """Pure wiring. ``config`` reads files (``data_source.resolve_data_source`` has written any
    generated data) and ``class_names`` is the class list the gates are built with.
    ``schema_file``: the curated schema's path (default: written under ``run_dir``);
    ``portable``: only what a Kubeflow/Vertex spec can hold; ``image``: the spec's container
    image (the Vertex training job's workers run it)."""
    class_names = list(class_names)
    example_gen = ImageExampleGen(config=stage_config(config, "ingest"))
    baseline_stats = previous_accepted_statistics(portable=portable)
    validation = validation_components(
        example_gen.outputs["examples"], config, baseline_stats.outputs["statistics"],
        schema_file=schema_file, schema_dir=os.path.join(run_dir, "schema"), class_names=class_names)
    components = [example_gen, baseline_stats, *validation]
    if not stop_after_data:
        components.extend(_model_components(config, example_gen, validation, pipeline_root,
                                            vertex_image=image if portable else ""))

    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.runner.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=beam_pipeline_args or config.runner.beam_pipeline_args(),
    )


def _model_components(config, example_gen, validation, pipeline_root, vertex_image=""):
    """Each component is given only the config it reads (``stage_config``): TFX's cache then
    re-runs only what a change can affect."""
    config_json = json.dumps(stage_config(config, "train").to_dict(), sort_keys=True)
    evaluate_config = stage_config(config, "evaluate")
    examples = example_gen.outputs["examples"]
    baseline_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    custom_config = {trainer_module.CONFIG_KEY: config_json,
                     trainer_module.BACKUP_ROOT_KEY: os.path.join(pipeline_root, "_train_backup")}
    trainer_class = tfx.components.Trainer
    if vertex_image and config.train.workers > 1:  # a Vertex custom job of train.workers machines
        from tfx.extensions.google_cloud_ai_platform.trainer.component import Trainer as VertexTrainer

        from visionpipe.pipeline.vertex_training import vertex_custom_config

        trainer_class = VertexTrainer
        custom_config.update(vertex_custom_config(config, vertex_image))
    trainer = trainer_class(
        run_fn=TRAINER_RUN_FN,
        examples=examples,
        # train.warm_start: the latest blessed model (none on a first run)
        base_model=baseline_model.outputs["model"] if config.train.warm_start != "none" else None,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=None),
        custom_config=custom_config,
    )
    trainer.add_upstream_node(validation.data_gate)
    evaluator = Evaluator(examples=examples, model=trainer.outputs["model"],
                          baseline_model=baseline_model.outputs["model"], config=evaluate_config)
    components = [trainer, baseline_model, evaluator]
    stages, push_files = build_stages(
        task_class(config.task).pipeline_stages, evaluate_config,
        StageInputs(examples=examples, model=trainer.outputs["model"],
                    blessing=evaluator.outputs["blessing"]))
    components.extend(stages)
    optimized = None
    if config.optimize.enabled:
        optimizer = ModelOptimizer(examples=examples, model=trainer.outputs["model"],
                                   config=stage_config(config, "optimize"),
                                   model_blessing=evaluator.outputs["blessing"])
        optimized = optimizer.outputs["optimized"]
        components.append(optimizer)
    if config.push.load_check:
        load_check = LoadCheck(model=trainer.outputs["model"],
                               model_blessing=evaluator.outputs["blessing"],
                               allowed_ops=list(config.push.allowed_ops))
        components.append(load_check)
    pusher = VisionPusher(model=trainer.outputs["model"],
                          model_blessing=evaluator.outputs["blessing"],
                          infra_blessing=load_check.outputs["blessing"] if config.push.load_check else None,
                          optimized=optimized, push_files=push_files,
                          serving_root=(config.push.serving_root if is_uri(config.push.serving_root)
                                        else os.path.abspath(config.push.serving_root)),
                          model_name=config.model_name)
    return components + [pusher]
