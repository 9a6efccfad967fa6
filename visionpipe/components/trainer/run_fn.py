"""The TFX Trainer entry point: ``run_fn(fn_args)``.

The pipeline passes the resolved VisionPipe config as JSON in ``custom_config['config']``;
class names come from the Examples artifact that ImageExampleGen wrote.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core.config import config_from_dict
from visionpipe.core.examples import (examples_uri_of, expand_patterns, optional_split_files,
                                      read_class_names)
from visionpipe.models import data, export, training
from visionpipe.tasks import get_task

log = logging.getLogger("visionpipe.trainer")
CONFIG_KEY = "config"
BACKUP_ROOT_KEY = "backup_root"
SUMMARY_FILE = "training_summary.json"
NUM_WARMUP_IMAGES = 3


def run_fn(fn_args) -> None:
    config = config_from_dict(json.loads(fn_args.custom_config[CONFIG_KEY]))
    train_files = expand_patterns(fn_args.train_files)
    eval_files = expand_patterns(fn_args.eval_files)
    class_names = read_class_names(examples_uri_of(fn_args.train_files))
    task = get_task(config, class_names)

    backup_root = fn_args.custom_config.get(BACKUP_ROOT_KEY)
    backup_dir = None
    if backup_root:
        key = hashlib.sha256((fn_args.custom_config[CONFIG_KEY] + "".join(train_files)).encode())
        backup_dir = os.path.join(backup_root, key.hexdigest()[:16])

    warm_start = fn_args.base_model if config.train.warm_start != "none" else None
    result = training.train(config, task, train_files, eval_files, log_dir=fn_args.model_run_dir,
                            backup_dir=backup_dir, warm_start_from=warm_start)
    if not result.chief:  # a multi-worker run's other workers: the chief exports
        log.info("worker done; the chief writes the model")
        return
    calibration_files = calibration_split_files(fn_args.train_files, config.model.calibration_split)
    calibrated_on = finalize_and_export(task, result, eval_files, fn_args.serving_model_dir,
                                        config.model_name, calibration_files, train_files)
    summary = result.summary()
    if calibrated_on:
        summary["calibrated_on"] = calibrated_on
    summary["class_names"] = class_names
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)


def calibration_split_files(train_patterns, split: str):
    """The Examples files of the calibration split, or None when the Examples have none."""
    return optional_split_files(examples_uri_of(train_patterns), split)


def finalize_and_export(task, result, eval_files, export_dir: str, model_name: str,
                        calibration_files=None, train_files=None) -> str:
    """The task's ``finalize`` on held-out data (e.g. multi-label thresholds), or on the
    training split for a task whose ``finalize_split`` is "train" (a search gallery), then
    export.

    Returns the split finalized on ("calibration", "eval", "train"), or "" when the task has
    nothing to finalize."""
    calibrated_on = ""
    if task.finalizes and task.finalize_split == "train" and train_files:
        calibrated_on = "train"
        task.finalize(result.model, data.make_dataset(train_files, task, 64, training=False))
    elif task.finalizes:
        calibrated_on = task.config.model.calibration_split if calibration_files else "eval"
        if not calibration_files:
            log.warning("no '%s' split in the Examples: %s calibrates on the eval split, so the "
                        "gate's metrics on it are optimistic; add the split to data.split_ratios",
                        task.config.model.calibration_split, task.name)
        held_out = data.make_dataset(calibration_files or eval_files, task, 64, training=False)
        task.finalize(result.model, held_out)
    warmup = data.raw_images(eval_files, NUM_WARMUP_IMAGES)
    export.export_saved_model(result.model, task, export_dir, warmup, model_name)
    return calibrated_on
