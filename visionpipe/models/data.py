"""The tf.data input pipeline shared by training and evaluation.

Examples (gzip TFRecords of the one feature spec) -> task.example_to_inputs (the shared
preprocessing) -> cache -> shuffle -> batch -> augment (training only, stateless draws seeded
per batch: see ``augment_batches``) -> prefetch.
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.examples import records


def _distribution_options() -> tf.data.Options:
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    options.deterministic = True
    return options


def pairs(files: Sequence[str], task) -> tf.data.Dataset:
    """Unbatched (image, target) pairs."""
    return records(files).map(
        lambda s: task.example_to_inputs(features.parse_single(s, task.feature_keys)),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def class_counts(files: Sequence[str], num_classes: int) -> np.ndarray:
    """Examples per class id (first label of each example)."""
    counts = np.zeros(num_classes, dtype=np.int64)
    labels = records(files).map(lambda s: features.parse_single(s, [features.LABEL])[features.LABEL])
    for label in labels.as_numpy_iterator():
        if label.size:
            counts[int(label[0])] += 1
    return counts


def count_elements(dataset: tf.data.Dataset) -> int:
    """Elements in one pass over a finite dataset (iterates it when the count is unknown)."""
    known = int(dataset.cardinality())
    if known >= 0:
        return known
    return int(dataset.reduce(np.int64(0), lambda n, _: n + 1).numpy())


def count_examples(files: Sequence[str]) -> int:
    return count_elements(records(files))


def make_dataset(files: Sequence[str], task, batch_size: int, training: bool, seed: int = 0,
                 oversample_counts: np.ndarray | None = None, cache: bool = True) -> tf.data.Dataset:
    """Batched (image, target) dataset; training data is shuffled, repeated and augmented.

    ``oversample_counts`` (examples per class) turns on class-balanced sampling."""
    dataset = pairs(files, task)
    if cache:
        dataset = dataset.cache()
    if training:
        if oversample_counts is not None:
            dataset = _balanced(dataset, oversample_counts, seed)
        else:
            dataset = dataset.shuffle(2048, seed=seed, reshuffle_each_iteration=True).repeat()
    dataset = task.batch_dataset(dataset, batch_size, drop_remainder=False)
    if training:
        dataset = augment_batches(dataset, task)
    return dataset.prefetch(tf.data.AUTOTUNE).with_options(_distribution_options())


def augment_batches(dataset: tf.data.Dataset, task, seed: int | None = None) -> tf.data.Dataset:
    """Augment (images, targets) batches; batch ``i`` of the iteration gets the stateless seed
    ``(seed, i)`` (default ``augment.seed``), so the augmentation depends on the seed and the
    batch's position only: reproducible under the parallel map, different batch to batch and,
    as the training data repeats before batching, epoch to epoch. (The counter restarts with
    each new iterator: a dataset iterated afresh per epoch, or a second ``fit`` on the same
    dataset, repeats the seeds of the batch positions, on reshuffled images.)"""
    seed = task.config.augment.seed if seed is None else seed
    batch_seeds = tf.data.Dataset.counter(dtype=tf.int64).map(
        lambda i: tf.stack([tf.constant(seed, tf.int64), i]))
    return tf.data.Dataset.zip((dataset, batch_seeds)).map(
        lambda batch, batch_seed: task.augment_batch(batch[0], batch[1], batch_seed),
        num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)


def _balanced(dataset: tf.data.Dataset, counts: np.ndarray, seed: int) -> tf.data.Dataset:
    """Oversample: draw each present class with equal probability (each stream repeats)."""
    per_class = [
        dataset.filter(lambda _, target, c=c: tf.equal(tf.argmax(target, output_type=tf.int32), c))
        .shuffle(512, seed=seed + c).repeat()
        for c in range(len(counts)) if counts[c] > 0]
    return tf.data.Dataset.sample_from_datasets(per_class, seed=seed, stop_on_empty_dataset=False)


def raw_images(files: Sequence[str], limit: int) -> List[bytes]:
    """The first encoded images of a split (warm-up requests, previews)."""
    encoded = records(files).take(limit).map(
        lambda s: features.parse_single(s, [features.ENCODED])[features.ENCODED])
    return [bytes(e) for e in encoded.as_numpy_iterator()]
