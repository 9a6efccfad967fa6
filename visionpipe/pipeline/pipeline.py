"""``create_pipeline()``: the one definition of a VisionPipe run, for every runner.

ImageExampleGen -> StatisticsGen -> ImportSchemaGen -> ExampleValidator -> DataGate
  -> Trainer (run_fn, MirroredStrategy) -> Evaluator (task gate, vs latest blessed)
  -> [ModelOptimizer] -> LoadCheck (fresh process, warm-up requests) -> Pusher (atomic)
"""
from __future__ import annotations

import copy
import json
import os
from typing import List, Optional

import visionpipe  # noqa: F401
from tfx import v1 as tfx

from visionpipe.components.image_example_gen.component import ImageExampleGen
from visionpipe.components.data_validation.wiring import (previous_accepted_statistics,
                                                          validation_components)
from visionpipe.components.load_check.component import LoadCheck
from visionpipe.components.model_optimizer.component import ModelOptimizer
from visionpipe.components.pusher.component import VisionPusher
from visionpipe.models import trainer as trainer_module
from visionpipe.models.tasks import task_class

TRAINER_RUN_FN = "visionpipe.models.trainer.run_fn"


def resolve_data_source(config, run_dir: str):
    """Generated sources (shapes, digits) are written to files first, then ingested like any
    other source; returns the config ImageExampleGen reads."""
    from visionpipe.datasets.generated import GENERATED_SOURCES, ingest_source, prepare_generated_source

    if config.data.source not in GENERATED_SOURCES:
        return config
    resolved = copy.deepcopy(config)
    resolved.data.path = prepare_generated_source(config, run_dir)
    resolved.data.source = ingest_source(config)
    return resolved


def class_names_for_wiring(config) -> List[str]:
    """The class list the gate is built with: data.class_names, the generator's classes, or
    what a listed source (folder, CSV, COCO, VOC) declares. The run re-checks it."""
    from visionpipe.components.data_validation.wiring import expected_class_names
    from visionpipe.components.image_example_gen.sources import make_source
    from visionpipe.pipeline.config import ConfigError

    names = expected_class_names(config) or make_source(config.data).class_names
    if not names:
        raise ConfigError(
            f"data.class_names: required for source {config.data.source!r}, whose classes are only "
            "known after ingestion (the evaluation gate needs the class list); "
            "set data.class_names=[a,b,...]")
    return list(names)


def create_pipeline(config, pipeline_root: str, metadata_path: str, run_dir: str,
                    beam_pipeline_args: Optional[List[str]] = None,
                    stop_after_data: bool = False) -> tfx.dsl.Pipeline:
    config = resolve_data_source(config, run_dir)
    config_json = json.dumps(config.to_dict(), sort_keys=True)

    class_names = class_names_for_wiring(config)
    example_gen = ImageExampleGen(config=config)
    baseline_stats = previous_accepted_statistics()
    validation = validation_components(
        example_gen.outputs["examples"], config, baseline_stats.outputs["statistics"],
        schema_dir=os.path.join(run_dir, "schema"), class_names=class_names)
    components = [example_gen, baseline_stats, *validation]
    if not stop_after_data:
        components.extend(_model_components(config, config_json, example_gen, validation,
                                            pipeline_root, class_names))

    return tfx.dsl.Pipeline(
        pipeline_name=config.name,
        pipeline_root=pipeline_root,
        components=components,
        enable_cache=config.runner.enable_cache,
        metadata_connection_config=tfx.orchestration.metadata.sqlite_metadata_connection_config(
            metadata_path),
        beam_pipeline_args=beam_pipeline_args or default_beam_args(config),
    )


def _model_components(config, config_json, example_gen, validation, pipeline_root, class_names):
    examples = example_gen.outputs["examples"]
    trainer = tfx.components.Trainer(
        run_fn=TRAINER_RUN_FN,
        examples=examples,
        train_args=tfx.proto.TrainArgs(splits=["train"]),
        eval_args=tfx.proto.EvalArgs(splits=["eval"], num_steps=None),
        custom_config={trainer_module.CONFIG_KEY: config_json,
                       trainer_module.BACKUP_ROOT_KEY: os.path.join(pipeline_root, "_train_backup")},
    )
    trainer.add_upstream_node(validation.data_gate)
    baseline_model = tfx.dsl.Resolver(
        strategy_class=tfx.dsl.experimental.LatestBlessedModelStrategy,
        model=tfx.dsl.Channel(type=tfx.types.standard_artifacts.Model),
        model_blessing=tfx.dsl.Channel(type=tfx.types.standard_artifacts.ModelBlessing),
    ).with_id("latest_blessed_model_resolver")
    task = task_class(config.task)(config, class_names)
    evaluator = task.evaluator_component(examples, trainer.outputs["model"],
                                         baseline_model.outputs["model"])
    components = [trainer, baseline_model, evaluator]
    optimized = None
    if config.optimize.enabled:
        optimizer = ModelOptimizer(examples=examples, model=trainer.outputs["model"], config=config,
                                   model_blessing=evaluator.outputs["blessing"])
        optimized = optimizer.outputs["optimized"]
        components.append(optimizer)
    if config.push.load_check:
        load_check = LoadCheck(model=trainer.outputs["model"],
                               model_blessing=evaluator.outputs["blessing"])
        components.append(load_check)
    pusher = VisionPusher(model=trainer.outputs["model"],
                          model_blessing=evaluator.outputs["blessing"],
                          infra_blessing=load_check.outputs["blessing"] if config.push.load_check else None,
                          optimized=optimized,
                          serving_root=os.path.abspath(config.push.serving_root),
                          model_name=config.model_name)
    return components + [pusher]


def default_beam_args(config) -> List[str]:
    return ["--direct_running_mode=in_memory",
            f"--direct_num_workers={config.runner.beam_direct_num_workers}"]
