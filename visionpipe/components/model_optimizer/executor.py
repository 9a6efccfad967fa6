"""Executor of ModelOptimizer (see component.py)."""
from __future__ import annotations

import copy
import json
import os
from typing import Any, Dict, List

import visionpipe  # noqa: F401
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

from visionpipe.components.model_optimizer.spec import (BLESSED_FILES_PROPERTY, CONFIG_KEY,
                                                        EXAMPLES_KEY, MODEL_BLESSING_KEY, MODEL_KEY,
                                                        OPTIMIZED_KEY, REPORT_FILE,
                                                        REPORT_MARKDOWN_FILE)

TRAIN_SPLIT = "train"
EVAL_SPLIT = "eval"
EVAL_BATCH_SIZE = 32


def _is_blessed(blessing: types.Artifact) -> bool:
    from tfx.components.evaluator import constants

    if blessing.has_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY):
        return bool(blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY))
    return tf.io.gfile.exists(os.path.join(blessing.uri, constants.BLESSED_FILE_NAME))


def _write_not_run(optimized: types.Artifact, reason: str) -> None:
    report = {"blessed_files": [], "skipped": {"optimize": reason}, "artifacts": []}
    io_utils.write_string_file(os.path.join(optimized.uri, REPORT_FILE), json.dumps(report, indent=2))
    io_utils.write_string_file(os.path.join(optimized.uri, REPORT_MARKDOWN_FILE),
                               f"Optimization skipped: {reason}\n")
    optimized.set_string_custom_property(BLESSED_FILES_PROPERTY, "[]")


def student_config(config):
    """The pipeline config with the student's backbone (no pretrained weights)."""
    student = copy.deepcopy(config)
    student.model.backbone = config.optimize.student_backbone
    student.model.width = config.optimize.student_width
    student.model.weights = ""
    return student


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        from visionpipe.core.examples import read_class_names
        from visionpipe.models import data, export
        from visionpipe.core.examples import split_files
        from visionpipe.tasks import get_task
        from visionpipe.optimize.optimizer import OptimizationInputs, TaskHooks, optimize
        from visionpipe.core.config import config_from_dict

        config = config_from_dict(json.loads(exec_properties[CONFIG_KEY])).validate()
        optimized = artifact_utils.get_single_instance(output_dict[OPTIMIZED_KEY])
        blessings = input_dict.get(MODEL_BLESSING_KEY) or []
        if blessings and not _is_blessed(blessings[0]):
            logging.info("ModelOptimizer: the model is not blessed; nothing to optimize")
            _write_not_run(optimized, "the model was not blessed by the evaluator")
            return

        examples = artifact_utils.get_single_instance(input_dict[EXAMPLES_KEY])
        model_artifact = artifact_utils.get_single_instance(input_dict[MODEL_KEY])
        class_names = read_class_names(examples.uri)
        task = get_task(config, class_names)
        serving_dir = path_utils.serving_model_path(model_artifact.uri)
        # A task whose Keras model the optimizer cannot rewrite converts straight from the
        # export: a keras-cv detector does not survive a Keras reload, and the export's
        # signatures are what keep its decoding and NMS.
        model = None if task.keras_rewrites_unsupported else export.load_keras_model(serving_dir)

        train_files = split_files(examples.uri, TRAIN_SPLIT)
        eval_files = split_files(examples.uri, EVAL_SPLIT)
        train_pairs = data.pairs(train_files, task).cache()
        train_batches = task.batch_dataset(
            train_pairs.shuffle(1024, seed=config.train.seed), config.train.batch_size)
        calibration = train_pairs.map(lambda image, _: image).take(
            config.optimize.representative_samples).as_numpy_iterator()
        eval_pairs = data.pairs(eval_files, task)
        if config.optimize.eval_max_images:
            eval_pairs = eval_pairs.take(config.optimize.eval_max_images)
        eval_batches = task.batch_dataset(eval_pairs.cache(), EVAL_BATCH_SIZE)

        def build_student():
            return get_task(student_config(config), class_names).build_model()

        hooks = TaskHooks(
            evaluate_tflite=lambda path: task.evaluate_tflite(path, eval_batches),
            gate_metric=task.gate_metric, compile_model=task.compile_model,
            tflite_metadata_kind=task.tflite_metadata_kind, build_student=build_student, convert_tflite=task.convert_tflite,
            augment_batches=lambda batches: data.augment_batches(batches, task),
            tflite_modes=task.tflite_modes, static_shape_model=task.static_shape_model,
            keras_rewrites_unsupported=task.keras_rewrites_unsupported,
            convert_onnx=task.convert_onnx,
            evaluate_onnx=lambda path: task.evaluate_onnx(path, eval_batches),
            onnx_unsupported=task.onnx_unsupported)
        inputs = OptimizationInputs(model=model, train_batches=train_batches,
                                    calibration_images=calibration, labels=class_names,
                                    saved_model_dir=serving_dir)
        report = optimize(inputs, hooks, config.optimize, optimized.uri)
        blessed = report.blessed_files
        optimized.set_string_custom_property(BLESSED_FILES_PROPERTY, json.dumps(blessed))
        logging.info("ModelOptimizer: blessed %s\n%s", blessed, report.to_markdown())
