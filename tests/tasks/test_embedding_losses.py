"""The embedding task's metric-learning losses on hand-worked numbers, and the P x K sampler."""
import math

import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.tasks.embedding import losses
from visionpipe.tasks.embedding.sampler import classes_in, pk_batches

# four unit vectors at the compass points; north-east pair is one identity, south-west another
# distances: adjacent sqrt(2), opposite 2; cosines: adjacent 0, opposite -1
COMPASS = tf.constant([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
LABELS = tf.constant([0, 0, 1, 1])
R2 = math.sqrt(2.0)


def test_pairwise_distances_are_euclidean_with_a_zero_diagonal():
    d = losses.pairwise_distances(COMPASS).numpy()
    np.testing.assert_allclose(d, [[0, R2, 2, R2], [R2, 0, R2, 2], [2, R2, 0, R2], [R2, 2, R2, 0]],
                               atol=1e-6)


def test_batch_hard_triplet_takes_the_farthest_positive_and_nearest_negative():
    # every anchor: farthest positive sqrt(2), nearest negative sqrt(2) -> relu(0 + 0.2)
    assert float(losses.triplet_hard(LABELS, COMPASS, 0.2)) == pytest.approx(0.2, abs=1e-6)


def test_semihard_triplet_takes_the_nearest_negative_beyond_the_positive():
    # pair (0, 1): d_ap sqrt(2); negatives at 2 and sqrt(2): the semi-hard one is at 2
    assert float(losses.triplet_semihard(LABELS, COMPASS, 1.0)) == pytest.approx(R2 - 2 + 1, abs=1e-6)
    assert float(losses.triplet_semihard(LABELS, COMPASS, 0.2)) == pytest.approx(0.0, abs=1e-6)


def test_semihard_triplet_falls_back_to_the_farthest_negative_when_none_is_beyond():
    # anchor 0 at (1,0), positive at (-1,0) (d 2), negatives at (0,1), (0,-1) (d sqrt 2 < 2)
    e = tf.constant([[1.0, 0.0], [-1.0, 0.0], [0.0, 1.0], [0.0, -1.0]])
    labels = tf.constant([0, 0, 1, 1])
    # pairs (0,1),(1,0): 2 - sqrt2 + 0.1; pairs (2,3),(3,2) likewise -> all equal
    assert float(losses.triplet_semihard(labels, e, 0.1)) == pytest.approx(2 - R2 + 0.1, abs=1e-6)


def test_contrastive_averages_positive_d2_and_negative_hinge_over_all_pairs():
    # positives (0,1),(2,3): d^2 = 2; negatives at sqrt2: (1.5 - sqrt2)^2 twice, at 2: 0 twice
    expected = (2 + 2 + 2 * (1.5 - R2) ** 2) / 6
    assert float(losses.contrastive(LABELS, COMPASS, 1.5)) == pytest.approx(expected, abs=1e-6)


def test_multi_similarity_mines_pairs_and_weights_them():
    # anchor 0: positive cos 0; negatives cos -1 (not mined: -0.9 < 0) and cos 0 (mined)
    expected = math.log1p(math.e) / 2 + math.log1p(math.exp(-25)) / 50
    assert float(losses.multi_similarity(LABELS, COMPASS, 0.1)) == pytest.approx(expected, abs=1e-6)


def test_arcface_adds_the_angular_margin_to_the_true_class_only():
    e = tf.constant([[1.0, 0.0]])
    centres = tf.constant([[2.0, 0.0], [0.0, 3.0]])  # normalised inside
    # cos = [1, 0]; true logit cos(0 + 0.5); CE = log(1 + e^{-cos 0.5}) with scale 1
    expected = math.log1p(math.exp(-math.cos(0.5)))
    assert float(losses.arcface(tf.constant([0]), e, centres, 0.5, 1.0)) == pytest.approx(
        expected, abs=1e-4)  # sin theta is kept >= 3e-5 for a finite gradient


@pytest.mark.parametrize("kind", ["triplet_semihard", "triplet_hard", "contrastive",
                                  "multi_similarity", "arcface"])
def test_every_loss_has_finite_gradients_on_a_batch_with_duplicates(kind):
    e = tf.Variable(tf.math.l2_normalize(tf.constant([[1.0, 0.0], [1.0, 0.0], [0.6, 0.8],
                                                      [0.0, 1.0]]), axis=1))
    layer = losses.ArcFaceCentres(2)
    layer.build((None, 2))
    loss = losses.MetricLoss(kind, 0.2, 4.0, centres=layer)
    with tf.GradientTape() as tape:
        value = loss(tf.constant([0, 0, 1, 1]), e)
    grad = tape.gradient(value, e)
    assert np.isfinite(float(value)) and np.all(np.isfinite(grad.numpy()))


def test_pk_sampler_yields_k_images_of_each_of_p_distinct_classes():
    labels = np.repeat(np.arange(6), 5)
    images = np.arange(len(labels), dtype=np.float32)
    stream = tf.data.Dataset.from_tensor_slices((images, labels)).shuffle(30, seed=1).repeat()
    batches = pk_batches(stream, classes=range(6), classes_per_batch=3, images_per_class=4, seed=5)
    seen = set()
    for _, batch_labels in batches.take(6):
        values, counts = np.unique(batch_labels.numpy(), return_counts=True)
        assert len(values) == 3 and set(counts) == {4}, batch_labels.numpy()
        seen.update(values.tolist())
    assert len(seen) > 3  # the classes change from batch to batch


def test_pk_sampler_caps_p_at_the_number_of_classes():
    stream = tf.data.Dataset.from_tensor_slices(
        (np.zeros(4, np.float32), np.array([0, 1, 0, 1]))).repeat()
    (_, batch_labels), = pk_batches(stream, [0, 1], 8, 2).take(1)
    assert sorted(batch_labels.numpy().tolist()) == [0, 0, 1, 1]


def test_pk_sampler_draws_only_the_classes_the_training_stream_holds():
    # class ids 0..4 exist, but the training data holds only 1 and 3: no wait for the others
    stream = tf.data.Dataset.from_tensor_slices(
        (np.zeros(6, np.float32), np.array([1, 3, 1, 3, 1, 3]))).shuffle(6, seed=2).repeat()
    classes = classes_in(stream, limit=60)
    assert classes == [1, 3]
    (_, batch_labels), = pk_batches(stream, classes, 4, 3).take(1)
    assert sorted(batch_labels.numpy().tolist()) == [1, 1, 1, 3, 3, 3]
