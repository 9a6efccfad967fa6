"""The membrane recipe's pieces on 32 px models and hand-made masks: elastic deformation moves
the mask with its image (nearest, ids kept, seeded), test-time flips average the flipped
passes (so the served class map flips with its input), the boundary band weighs the
cross-entropy, serve_probabilities is off by default, and each key's bad value is a one-line
config error naming it."""
from __future__ import annotations

import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError
from visionpipe.tasks.segmentation import losses
from visionpipe.tasks.segmentation.elastic import elastic_deform

CLASSES = ["background", "circle", "square"]


def seg_config(*overrides):
    return load_config(overrides=["task=segmentation", "model.image_size=32", "segmentation.width=4",
                                  "segmentation.depth=3", *overrides]).validate()


def seg_task(*overrides):
    from visionpipe.tasks import get_task

    return get_task(seg_config(*overrides), CLASSES)


def _blocks(batch=2, size=32):
    ids = np.zeros((batch, size, size, 1), np.int32)
    ids[:, 4:14, 2:12] = 1
    ids[:, 18:30, 20:30] = 2
    ids[:, 0:2, :] = 255
    # the image encodes the mask: a pixel's value is 100 * its id (ignored: 250)
    images = np.where(ids == 255, 250, ids * 100).repeat(3, -1).astype(np.float32)
    return images, ids


def test_elastic_deformation_moves_the_mask_with_its_image_and_keeps_its_ids():
    images, ids = _blocks()
    seed = tf.constant([7, 1], tf.int64)
    out_images, out_masks = (t.numpy() for t in elastic_deform(
        tf.constant(images), tf.constant(ids), 3.0, 3, seed))
    assert out_images.shape == images.shape and out_masks.shape == ids.shape
    assert out_masks.dtype == np.int32
    assert set(np.unique(out_masks)) <= {0, 1, 2, 255}  # nearest: never a blended id
    assert 0.02 < np.mean(out_masks != ids) < 0.5  # it moved, smoothly (not scrambled)
    assert not np.array_equal(out_masks[0], out_masks[1])  # a field per image
    # where the (bilinear) image is clearly one id's value, the (nearest) mask says that id
    for value, class_id in ((0, 0), (100, 1), (200, 2), (250, 255)):
        sure = np.abs(out_images[..., 0] - value) < 1
        assert sure.sum() > 20
        assert np.mean(out_masks[..., 0][sure] == class_id) > 0.98, (value, class_id)
    again = elastic_deform(tf.constant(images), tf.constant(ids), 3.0, 3, seed)[1].numpy()
    np.testing.assert_array_equal(again, out_masks)  # seeded: reproducible
    other = elastic_deform(tf.constant(images), tf.constant(ids), 3.0, 3, tf.constant([7, 2], tf.int64))
    assert not np.array_equal(other[1].numpy(), out_masks)


def test_the_task_deforms_training_crops_only_with_the_key_set():
    images, ids = _blocks(4)
    seed = tf.constant([3, 4], tf.int64)
    plain = seg_task("augment.horizontal_flip=false", "segmentation.train_crop=16")
    deformed = seg_task("augment.horizontal_flip=false", "segmentation.train_crop=16",
                        "segmentation.elastic_displacement=3")
    crops, crop_masks = plain.augment_batch(tf.constant(images), tf.constant(ids), seed)
    warped, warped_masks = deformed.augment_batch(tf.constant(images), tf.constant(ids), seed)
    assert warped.shape == crops.shape == (4, 16, 16, 3) and warped_masks.shape == (4, 16, 16, 1)
    # the same windows, then warped inside them
    assert not np.array_equal(warped_masks.numpy(), crop_masks.numpy())
    sure = np.abs(warped.numpy()[..., 0] - 100) < 1
    assert np.mean(warped_masks.numpy()[..., 0][sure] == 1) > 0.98


def test_test_time_flips_average_the_flipped_passes_so_the_class_map_flips_with_the_image():
    task = seg_task("segmentation.test_time_flips=both", "segmentation.serve_probabilities=true")
    model = task.build_model()

    def serve(pixels):  # what serving_tensor (and, per image, serving_default) runs
        return task.serving_outputs(model, pixels)

    pixels = np.random.default_rng(0).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    out = serve(pixels=tf.constant(pixels))
    by_hand = np.mean([np.flip(model(np.flip(pixels, axes).copy()).numpy(), axes) if axes else
                       model(pixels).numpy() for axes in ((), (2,), (1,), (1, 2))], axis=0)
    np.testing.assert_allclose(out["probabilities"].numpy(), by_hand, atol=1e-5)
    np.testing.assert_array_equal(out["class_map"].numpy(), np.argmax(by_hand, -1))
    # averaged over the flip group, the map of a flipped image is the flipped map
    mirrored = serve(pixels=tf.constant(np.flip(pixels, 2).copy()))["probabilities"].numpy()
    np.testing.assert_allclose(mirrored, np.flip(out["probabilities"].numpy(), 2), atol=1e-5)
    # one pass (the default) has no such symmetry: the flips are what makes it
    plain = seg_task("segmentation.serve_probabilities=true")
    one = plain.serving_outputs(model, tf.constant(pixels))["probabilities"].numpy()
    np.testing.assert_allclose(one, model(pixels).numpy(), atol=1e-5)
    flipped = plain.serving_outputs(model, tf.constant(np.flip(pixels, 2).copy()))["probabilities"]
    assert np.abs(flipped.numpy() - np.flip(one, 2)).max() > 1e-4


def test_probabilities_are_served_only_when_asked_for():
    pixels = tf.zeros([1, 32, 32, 3])
    default = seg_task()
    out = default.signatures(default.build_model())["serving_default"](
        images=tf.constant([tf.io.encode_png(tf.zeros([20, 24, 3], tf.uint8)).numpy()]))
    assert set(out) == {"class_map", "class_map_png_bytes", "image_shape"}
    asked = seg_task("segmentation.serve_probabilities=true")
    out = asked.serving_outputs(asked.build_model(), pixels)
    assert out["probabilities"].shape == (1, 32, 32, len(CLASSES))


def test_the_boundary_band_weighs_the_cross_entropy_of_pixels_next_to_another_id():
    ids = np.zeros((1, 6, 6), np.int32)
    ids[0, :, 3:] = 1
    band = losses.boundary_band(tf.constant(ids), radius=1).numpy()[0]
    np.testing.assert_array_equal(band, np.tile([0, 0, 1, 1, 0, 0], (6, 1)))
    assert losses.boundary_band(tf.constant(ids), radius=2).numpy()[0].sum() == 6 * 4
    probs = np.random.default_rng(1).dirichlet([1, 1], (1, 6, 6)).astype(np.float32)
    per_pixel = -np.log(np.take_along_axis(probs, ids[..., None], -1)[..., 0])
    weights = np.where(ids == 0, 2.0, 1.0) * (1 + 3.0 * band[None])
    got = losses.cross_entropy(tf.constant(ids), tf.constant(probs), 2, class_weights=[2.0, 1.0],
                               boundary_weight=3.0, boundary_radius=1).numpy()
    np.testing.assert_allclose(got, (per_pixel * weights).sum() / weights.sum(), rtol=1e-5)
    config = seg_config("segmentation.boundary_weight=3", "segmentation.loss=cross_entropy")
    loss = losses.make_loss(config.segmentation, 2)(tf.constant(ids), tf.constant(probs)).numpy()
    unweighted = losses.cross_entropy(tf.constant(ids), tf.constant(probs), 2).numpy()
    assert loss != pytest.approx(unweighted)


@pytest.mark.parametrize("overrides, key", [
    (["segmentation.test_time_flips=diagonal"], "segmentation.test_time_flips"),
    (["segmentation.elastic_displacement=-1"], "segmentation.elastic_displacement"),
    (["segmentation.elastic_grid=1"], "segmentation.elastic_grid"),
    (["segmentation.elastic_displacement=5", "augment.enabled=false"], "segmentation.elastic_displacement"),
    (["segmentation.boundary_weight=-0.5"], "segmentation.boundary_weight"),
    (["segmentation.boundary_weight=2", "segmentation.loss=dice"], "segmentation.boundary_weight"),
    (["segmentation.boundary_radius=0"], "segmentation.boundary_radius")])
def test_a_bad_recipe_value_is_a_config_error_naming_its_key(overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        seg_config(*overrides)
