"""Executor of DetectionEvaluator (see component.py)."""
from __future__ import annotations

import json
import math
import os
from typing import Any, Dict, List

import visionpipe  # noqa: F401
import tensorflow as tf
from absl import logging
from tfx import types
from tfx.components.evaluator import constants
from tfx.dsl.components.base import base_executor
from tfx.types import artifact_utils
from tfx.utils import io_utils, path_utils

METRICS_FILE = "coco_metrics.json"


class Executor(base_executor.BaseExecutor):

    def Do(self, input_dict: Dict[str, List[types.Artifact]],
           output_dict: Dict[str, List[types.Artifact]], exec_properties: Dict[str, Any]) -> None:
        from visionpipe.models.detection.coco_eval import compare_to_baseline
        from visionpipe.pipeline.config import config_from_dict

        config = config_from_dict(json.loads(exec_properties["config_json"]))
        class_names = json.loads(exec_properties["class_names_json"])
        split = exec_properties.get("eval_split") or "eval"
        files = _split_files(input_dict["examples"], split)
        serialized = _records(files)

        model = artifact_utils.get_single_instance(input_dict["model"])
        loaded = _load(path_utils.serving_model_path(model.uri))
        candidate = evaluate_loaded(loaded, serialized, class_names)
        baseline_artifacts = input_dict.get("baseline_model") or []
        baseline = None
        if baseline_artifacts:
            baseline_model = baseline_artifacts[0]
            baseline = evaluate_loaded(_load(path_utils.serving_model_path(baseline_model.uri)),
                                       serialized, class_names)
        blessed, reasons = compare_to_baseline(candidate, baseline, config.evaluate.thresholds,
                                               config.evaluate.max_drops)
        occlusion = occlusion_of_loaded(loaded, config, class_names, files)
        report = {"gate_metric": config.evaluate.gate_metric, "split": split, "blessed": blessed,
                  "reasons": reasons, "candidate": _json_safe(candidate),
                  "baseline": _json_safe(baseline) if baseline is not None else None,
                  "occlusion": _json_safe(occlusion)}
        logging.info("DetectionEvaluator: %s", json.dumps(report))

        evaluation = artifact_utils.get_single_instance(output_dict["evaluation"])
        io_utils.write_string_file(os.path.join(evaluation.uri, METRICS_FILE), json.dumps(report, indent=2))

        blessing = artifact_utils.get_single_instance(output_dict["blessing"])
        name = constants.BLESSED_FILE_NAME if blessed else constants.NOT_BLESSED_FILE_NAME
        io_utils.write_string_file(os.path.join(blessing.uri, name), "\n".join(reasons))
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY,
                                         constants.BLESSED_VALUE if blessed else constants.NOT_BLESSED_VALUE)
        blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_URI_KEY, model.uri)
        blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY, model.id)
        if baseline_artifacts:
            blessing.set_string_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY,
                                                baseline_artifacts[0].uri)
            blessing.set_int_custom_property(constants.ARTIFACT_PROPERTY_BASELINE_MODEL_ID_KEY,
                                             baseline_artifacts[0].id)


def _load(model_dir: str):
    """The exported SavedModel (loaded once: the gate and the occlusion report both run it)."""
    loaded = tf.saved_model.load(model_dir)
    if "serving_default" not in loaded.signatures:
        raise ValueError(f"{model_dir}: no serving_default signature")
    return loaded


def evaluate_loaded(loaded, serialized: tf.data.Dataset, class_names) -> Dict[str, float]:
    from visionpipe.models.detection import evaluation

    return evaluation.evaluate_examples(loaded.signatures["serving_default"], serialized, class_names)


def occlusion_of_loaded(loaded, config, class_names, files: List[str]) -> Dict[str, float]:
    """mAP on the eval split with synthetic occluders over 10/25/50% of each box (the summary's
    robustness numbers), through the exported ``serving_tensor`` signature."""
    from visionpipe.models import data
    from visionpipe.models.detection import evaluation
    from visionpipe.models.tasks import get_task

    task = get_task(config, class_names)
    serve = loaded.signatures["serving_tensor"]

    def predict(images):
        return {k: v.numpy() for k, v in serve(pixels=tf.constant(images, tf.float32)).items()}

    batches = task.batch_dataset(data.pairs(files, task), 16).as_numpy_iterator()
    return evaluation.occlusion_report(predict, batches, task.image_size, class_names,
                                       seed=config.train.seed)


def _split_files(examples: List[types.Artifact], split: str) -> List[str]:
    uri = artifact_utils.get_split_uri(examples, split)
    files = sorted(tf.io.gfile.glob(os.path.join(uri, "*")))
    if not files:
        raise ValueError(f"examples split {split!r} at {uri} has no files")
    return files


def _records(files: List[str]) -> tf.data.Dataset:
    compression = "GZIP" if files[0].endswith(".gz") else ""
    return tf.data.TFRecordDataset(files, compression_type=compression)


def _json_safe(metrics: Dict[str, float]) -> Dict[str, Any]:
    return {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in metrics.items()}
