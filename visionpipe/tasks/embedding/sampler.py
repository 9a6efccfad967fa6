"""The class-balanced P x K batch sampler: every training batch holds K images of each of P
distinct identities (what batch-mined losses need: positives and negatives in every batch)."""
from __future__ import annotations

import visionpipe  # noqa: F401
import tensorflow as tf


def pk_batches(pairs: tf.data.Dataset, num_classes: int, classes_per_batch: int,
               images_per_class: int, seed: int = 0) -> tf.data.Dataset:
    """Batches of ``P * K`` (image, class id) pairs from an infinite (shuffled, repeated)
    stream of ``pairs``; ``P = min(classes_per_batch, num_classes)``; batch ``i`` draws its
    P classes without replacement (stateless seed ``(seed, i)``), K images each, in class
    order. Every class needs a training image (the ingestion lists the classes it found)."""
    p = min(int(classes_per_batch), int(num_classes))
    k = int(images_per_class)
    per_class = [pairs.filter(lambda _, label, c=c: tf.equal(tf.cast(label, tf.int64), c))
                 for c in range(num_classes)]

    def choose(i):
        order = tf.argsort(tf.random.stateless_uniform([num_classes], seed=tf.stack(
            [tf.constant(seed, tf.int64), i])))
        return tf.repeat(tf.cast(tf.sort(order[:p]), tf.int64), k)

    choices = tf.data.Dataset.counter(dtype=tf.int64).map(choose).unbatch()
    return tf.data.Dataset.choose_from_datasets(per_class, choices).batch(p * k, drop_remainder=True)
