"""The P x K sampler draws every class of the training split: the trainer reads all of its
labels (``Task.train_class_counts``), not only the first ``sampler.CLASS_SCAN`` of the stream."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from visionpipe.core import features
from visionpipe.core.config import load_config
from visionpipe.models import data, training
from visionpipe.tasks import get_task
from visionpipe.tasks.embedding.sampler import CLASS_SCAN

SHUFFLE = 2048  # data.make_dataset's training shuffle buffer


def _write(path, labels):
    rng = np.random.default_rng(0)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for label in labels:
            png = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(png, format="PNG")
            feature = {
                features.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png.getvalue()])),
                features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[int(label)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return [str(path)]


def test_a_class_first_seen_after_the_scan_limit_is_drawn_once_the_counts_are_known():
    # class 2 comes after CLASS_SCAN pairs: a scan of the stream's head does not see it
    labels = np.array([0, 1] * (CLASS_SCAN // 2) + [2, 2, 2], np.int32)
    stream = tf.data.Dataset.from_tensor_slices((np.zeros(len(labels), np.float32), labels)).repeat()
    config = load_config(overrides=["task=embedding", "embedding.classes_per_batch=3",
                                    "embedding.images_per_class=2"]).validate()
    task = get_task(config, ["a", "b", "c"])
    (_, scanned), = task.batch_dataset(stream, 8).take(1)
    assert sorted(set(scanned.numpy().tolist())) == [0, 1]
    task.train_class_counts = np.bincount(labels, minlength=3)
    (_, counted), = task.batch_dataset(stream, 8).take(1)
    assert sorted(counted.numpy().tolist()) == [0, 0, 1, 1, 2, 2]


def test_the_trainer_counts_every_training_label_for_the_embedders_sampler(tmp_path):
    # class 2's three images are the last of the split, beyond what the shuffled stream's
    # first CLASS_SCAN pairs can hold
    labels = [0, 1] * ((CLASS_SCAN + SHUFFLE) // 2 + 8) + [2, 2, 2]
    train_files = _write(tmp_path / "train.gz", labels)
    eval_files = _write(tmp_path / "eval.gz", [0, 1, 2, 0, 1, 2])
    config = load_config(overrides=[
        "task=embedding", "model.image_size=16", "model.width=4", "embedding.dim=8",
        "embedding.classes_per_batch=3", "embedding.images_per_class=2", "train.epochs=1",
        "train.steps_per_epoch=1", "train.batch_size=6", "augment.enabled=false"]).validate()
    task = get_task(config, ["a", "b", "c"])
    training.train(config, task, train_files, eval_files, str(tmp_path / "logs"))
    assert task.train_class_counts.tolist() == [labels.count(c) for c in range(3)]
    (_, batch), = data.make_dataset(train_files, task, 6, training=True).take(1)
    assert sorted(batch.numpy().tolist()) == [0, 0, 1, 1, 2, 2]
