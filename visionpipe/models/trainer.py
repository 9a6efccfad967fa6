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

from visionpipe.models import data, export, training
from visionpipe.models.tasks import get_task
from visionpipe.pipeline.config import config_from_dict

log = logging.getLogger("visionpipe.trainer")
CONFIG_KEY = "config"
BACKUP_ROOT_KEY = "backup_root"
SUMMARY_FILE = "training_summary.json"
NUM_WARMUP_IMAGES = 3


def examples_uri_of(file_patterns) -> str:
    """<uri>/Split-train/* -> <uri>"""
    return os.path.dirname(os.path.dirname(file_patterns[0]))


def run_fn(fn_args) -> None:
    from visionpipe.components.image_example_gen.executor import read_class_names

    config = config_from_dict(json.loads(fn_args.custom_config[CONFIG_KEY]))
    train_files = data.expand_patterns(fn_args.train_files)
    eval_files = data.expand_patterns(fn_args.eval_files)
    class_names = read_class_names(examples_uri_of(fn_args.train_files))
    task = get_task(config, class_names)

    backup_root = fn_args.custom_config.get(BACKUP_ROOT_KEY)
    backup_dir = None
    if backup_root:
        key = hashlib.sha256((fn_args.custom_config[CONFIG_KEY] + "".join(train_files)).encode())
        backup_dir = os.path.join(backup_root, key.hexdigest()[:16])

    result = training.train(config, task, train_files, eval_files, log_dir=fn_args.model_run_dir,
                            backup_dir=backup_dir)
    finalize_and_export(task, result, eval_files, fn_args.serving_model_dir, config.model_name)
    summary = result.summary()
    summary["class_names"] = class_names
    tf.io.gfile.makedirs(fn_args.model_run_dir)
    with tf.io.gfile.GFile(os.path.join(fn_args.model_run_dir, SUMMARY_FILE), "w") as f:
        json.dump(summary, f, indent=2)


def finalize_and_export(task, result, eval_files, export_dir: str, model_name: str) -> str:
    """Task-specific calibration on held-out data (e.g. multi-label thresholds), then export."""
    if hasattr(task, "calibrate_thresholds"):
        eval_ds = data.make_dataset(eval_files, task, 64, training=False)
        probabilities = result.model.predict(eval_ds.map(lambda x, y: x), verbose=0)
        targets = tf.concat([y for _, y in eval_ds], axis=0).numpy()
        task.calibrate_thresholds(probabilities, targets)
    warmup = data.raw_images(eval_files, NUM_WARMUP_IMAGES)
    return export.export_saved_model(result.model, task, export_dir, warmup, model_name)
