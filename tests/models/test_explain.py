"""Grad-CAM, Grad-CAM++, occlusion sensitivity and saliency (``visionpipe.models.explain``) on
the classification task's model trained on coloured squares at random places: the maps must
peak on the square, the one region that decides the class."""
import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import explain


def _accuracy(fixture):
    predicted = np.argmax(fixture.model.predict(fixture.images, verbose=0), -1)
    return float(np.mean(predicted == fixture.labels))


def _peak_inside(maps, boxes):
    hits = []
    for heatmap, (y0, x0, y1, x1) in zip(maps, boxes):
        row, column = explain.peak(heatmap)
        hits.append(y0 <= row < y1 and x0 <= column < x1)
    return float(np.mean(hits))


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "occlusion"])
def test_the_map_of_the_true_class_peaks_inside_the_square_that_decides_it(squares_classifier,
                                                                            method):
    fixture = squares_classifier
    assert _accuracy(fixture) >= 0.95  # the model learned the colours
    maps = explain.explain(fixture.model, fixture.images, explain.class_target(fixture.labels),
                           method)
    assert maps.shape == fixture.images.shape[:3]
    assert maps.min() >= 0.0 and maps.max() <= 1.0
    assert _peak_inside(maps, fixture.boxes) >= 0.9, method
    # the square is 14% of the image; its pixels carry half as much again of the map
    mass = [h[y0:y1, x0:x1].sum() / h.sum() for h, (y0, x0, y1, x1) in zip(maps, fixture.boxes)]
    assert np.median(mass) > 1.5 * (12 * 12) / (32 * 32), method


def test_a_shuffled_map_does_not_peak_on_the_square(squares_classifier):
    """The check above can fail: the same maps, each paired with another image's square,
    miss most of the time."""
    fixture = squares_classifier
    maps = explain.gradcam(fixture.model, fixture.images, explain.class_target(fixture.labels))
    assert _peak_inside(maps, np.roll(fixture.boxes, 1, axis=0)) < 0.5


def test_gradcam_weighs_the_backbone_the_task_built(squares_classifier):
    assert explain.last_conv_layer(squares_classifier.model) == "backbone"


def test_saliency_is_the_absolute_input_gradient_of_the_class_score(squares_classifier):
    """The map is |d score / d pixel| (max over channels, scaled to [0, 1]); SmoothGrad's
    noisy average differs from it."""
    fixture = squares_classifier
    image = fixture.images[:1]
    target = explain.class_target(fixture.labels[:1])
    saliency = explain.saliency(fixture.model, image, target)[0]
    with tf.GradientTape() as tape:
        pixels = tf.constant(image)
        tape.watch(pixels)
        score = target(fixture.model(pixels, training=False))
    grad = np.abs(tape.gradient(score, pixels).numpy()[0]).max(axis=-1)
    np.testing.assert_allclose(saliency, (grad - grad.min()) / (grad.max() - grad.min()),
                               atol=1e-5)
    smooth = explain.saliency(fixture.model, image, target, samples=4, seed=1)[0]
    assert smooth.shape == saliency.shape and not np.allclose(smooth, saliency)


def test_an_unknown_method_and_a_model_without_feature_maps_are_clear_errors():
    inputs = tf.keras.Input((4,))
    flat = tf.keras.Model(inputs, tf.keras.layers.Dense(2)(inputs))
    with pytest.raises(ValueError, match="no layer with a 4-D output"):
        explain.last_conv_layer(flat)
    with pytest.raises(ValueError, match="unknown explanation method 'lime'"):
        explain.explain(flat, np.zeros((1, 4), np.float32), explain.class_target(0), "lime")


def test_overlay_blends_the_heatmap_into_the_image():
    image = np.zeros((8, 8, 3), np.uint8)
    heatmap = np.zeros((8, 8), np.float32)
    heatmap[2, 3] = 1.0
    blended = explain.overlay(image, heatmap)
    assert blended.dtype == np.uint8 and blended.shape == (8, 8, 3)
    assert not np.array_equal(blended[2, 3], blended[0, 0])
