"""The class-balanced P x K batch sampler: every training batch holds K images of each of P
distinct identities (what batch-mined losses need: positives and negatives in every batch)."""
from __future__ import annotations

from typing import Sequence


import visionpipe  # noqa: F401
import tensorflow as tf

#: elements of the training stream read to find which classes it holds
CLASS_SCAN = 4096


def classes_in(pairs: tf.data.Dataset, limit: int = CLASS_SCAN) -> list:
    """The class ids among the first ``limit`` (image, class id) pairs of a stream."""
    labels = pairs.map(lambda _, label: label).take(limit).as_numpy_iterator()
    return sorted({int(label) for label in labels})


def pk_batches(pairs: tf.data.Dataset, classes: Sequence[int], classes_per_batch: int,
               images_per_class: int, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``P * K`` (image, class id) pairs from an infinite (shuffled, repeated)
    stream of ``pairs``, over the class ids ``classes`` (each must occur in the stream, or its
    draws wait forever: ``classes_in`` finds them); ``P = min(classes_per_batch, len(classes))``;
    batch ``i`` draws its P classes without replacement (stateless seed ``(seed, i)``), K
    images each, in class order."""
    classes = [int(c) for c in classes]
    if len(classes) < 2:
        raise ValueError(f"a P x K batch needs at least 2 classes in the training data, got "
                         f"{classes}")
    p, k = min(int(classes_per_batch), len(classes)), int(images_per_class)
    per_class = [pairs.filter(lambda _, label, c=c: tf.equal(tf.cast(label, tf.int64), c))
                 for c in classes]
    n = len(classes)

    def choose(i):
        order = tf.argsort(tf.random.stateless_uniform([n], seed=tf.stack(
            [tf.constant(seed, tf.int64), i])))
        return tf.repeat(tf.cast(tf.sort(order[:p]), tf.int64), k)

    choices = tf.data.Dataset.counter(dtype=tf.int64).map(choose).unbatch()
    return tf.data.Dataset.choose_from_datasets(per_class, choices).batch(p * k, drop_remainder=True)


