"""The multi-label path (targets, sigmoid head, loss, thresholds, metrics) learns an easy rule.

Each 32x32 image holds 1-3 solid squares on grey noise; a red square means label ``red`` and so
on. Any working multi-label training gets that in a few epochs (the shapes data needs
thousands of images and ~2,000 steps, too slow for a unit test); an untrained model ranks
the images by chance.
"""
import io

import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from visionpipe.core import features
from visionpipe.core.config import load_config
from visionpipe.models import data, training
from visionpipe.tasks import get_task

NAMES = ["blue", "green", "red"]
COLOURS = {"blue": (30, 30, 230), "green": (30, 200, 30), "red": (230, 30, 30)}


def _write(path, count, seed):
    rng = np.random.default_rng(seed)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for _ in range(count):
            image = np.repeat(rng.integers(60, 180, size=(32, 32, 1), dtype=np.uint8), 3, axis=2)
            labels = sorted(rng.choice(3, size=rng.integers(1, 4), replace=False).tolist())
            for label in labels:
                y, x = rng.integers(0, 24, size=2)
                image[y:y + 8, x:x + 8] = COLOURS[NAMES[label]]
            png = io.BytesIO()
            Image.fromarray(image).save(png, format="PNG")
            feature = {
                features.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png.getvalue()])),
                features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=labels))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return [str(path)]


@pytest.mark.parametrize("epochs", [0, 8])
def test_trained_model_ranks_the_labels_and_an_untrained_one_does_not(tmp_path, epochs):
    config = load_config(overrides=[
        "task=multilabel", "model.image_size=32", "model.width=8", f"train.epochs={epochs}",
        "train.batch_size=32", "augment.enabled=false"])
    task = get_task(config, NAMES)
    train_files = _write(tmp_path / "train.gz", 384, seed=1)
    eval_files = _write(tmp_path / "eval.gz", 128, seed=2)
    result = training.train(config, task, train_files, eval_files, str(tmp_path / "logs"))
    held_out = data.make_dataset(eval_files, task, 64, training=False)
    probabilities = result.model.predict(held_out.map(lambda x, y: x), verbose=0)
    targets = np.concatenate([y.numpy() for _, y in held_out])
    task.calibrate_thresholds(probabilities, targets)
    metrics = task.metrics_from_predictions(probabilities, targets)
    assert set(NAMES) == {k.split("/")[1] for k in metrics if k.startswith("ap/")}
    if epochs:
        assert metrics["macro_auc"] > 0.9 and metrics["macro_map"] > 0.85
        assert min(metrics[f"ap/{name}"] for name in NAMES) > 0.8
    else:
        assert metrics["macro_auc"] < 0.75 and metrics["macro_map"] < 0.8
