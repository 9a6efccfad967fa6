"""Image-level augmentation for the training tf.data pipeline, built from keras-cv layers.

Works on batches of float32 pixels in [0, 255] with one-hot (or multi-hot) labels, so MixUp
and CutMix can mix labels too. Evaluation and serving never call it. Tasks whose targets
move with the image (boxes, masks) use their own target-aware augmentation.
"""
from __future__ import annotations

from typing import Callable, List

import visionpipe  # noqa: F401
import keras_cv
import tensorflow as tf

VALUE_RANGE = (0, 255)


class RandomGamma(tf.keras.layers.Layer):
    """Random gamma in [exp(-g), exp(g)] per image (illumination); keras-cv has no gamma layer."""

    def __init__(self, max_log_gamma: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.max_log_gamma = max_log_gamma
        self.seed = seed

    def call(self, images, training=True):
        if not training:
            return images
        batch = tf.shape(images)[0]
        log_gamma = tf.random.uniform([batch, 1, 1, 1], -self.max_log_gamma, self.max_log_gamma,
                                      seed=self.seed)
        return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), tf.exp(log_gamma))


class GaussianNoise(tf.keras.layers.Layer):
    """Additive Gaussian noise with stddev given in [0, 1] pixel units, clipped to range."""

    def __init__(self, stddev: float, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev
        self.seed = seed

    def call(self, images, training=True):
        if not training:
            return images
        noise = tf.random.normal(tf.shape(images), stddev=self.stddev * 255.0, seed=self.seed)
        return tf.clip_by_value(images + noise, 0.0, 255.0)


def _image_layers(cfg, image_size: int) -> List[tf.keras.layers.Layer]:
    seed = cfg.seed
    layers: List[tf.keras.layers.Layer] = []
    flip_mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
                 (False, True): "vertical"}.get((cfg.horizontal_flip, cfg.vertical_flip))
    if flip_mode:
        layers.append(keras_cv.layers.RandomFlip(flip_mode, seed=seed))
    if cfg.random_crop:
        layers.append(keras_cv.layers.RandomCropAndResize(
            target_size=(image_size, image_size), crop_area_factor=((1.0 - cfg.random_crop) ** 2, 1.0),
            aspect_ratio_factor=(3 / 4, 4 / 3), seed=seed))
    if cfg.rotation:
        layers.append(keras_cv.layers.RandomRotation(cfg.rotation, fill_mode="reflect", seed=seed))
    if cfg.zoom:
        layers.append(keras_cv.layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect", seed=seed))
    if cfg.translation:
        layers.append(keras_cv.layers.RandomTranslation(cfg.translation, cfg.translation,
                                                        fill_mode="reflect", seed=seed))
    if cfg.shear:
        layers.append(keras_cv.layers.RandomShear(x_factor=cfg.shear, y_factor=cfg.shear,
                                                  fill_mode="reflect", seed=seed))
    if cfg.brightness:
        layers.append(keras_cv.layers.RandomBrightness(cfg.brightness, value_range=VALUE_RANGE, seed=seed))
    if cfg.contrast:
        layers.append(keras_cv.layers.RandomContrast(VALUE_RANGE, cfg.contrast, seed=seed))
    if cfg.gamma:
        layers.append(RandomGamma(cfg.gamma, seed=seed))
    if cfg.saturation:
        layers.append(keras_cv.layers.RandomSaturation((0.5 - cfg.saturation / 2, 0.5 + cfg.saturation / 2),
                                                       seed=seed))
    if cfg.hue:
        layers.append(keras_cv.layers.RandomHue(cfg.hue, VALUE_RANGE, seed=seed))
    if cfg.randaugment_magnitude:
        layers.append(keras_cv.layers.RandAugment(VALUE_RANGE, augmentations_per_image=cfg.randaugment_ops,
                                                  magnitude=cfg.randaugment_magnitude, seed=seed))
    if cfg.gaussian_noise:
        layers.append(GaussianNoise(cfg.gaussian_noise, seed=seed))
    if cfg.cutout:
        layers.append(keras_cv.layers.RandomCutout(cfg.cutout, cfg.cutout, fill_mode="gaussian_noise",
                                                   seed=seed))
    return layers


def build_augmenter(cfg, image_size: int) -> Callable | None:
    """A function (images, labels) -> (images, labels) for batched training data, or None."""
    if not cfg.enabled:
        return None
    image_layers = _image_layers(cfg, image_size)
    mixers = []
    if cfg.mixup_alpha:
        mixers.append(keras_cv.layers.MixUp(alpha=cfg.mixup_alpha, seed=cfg.seed))
    if cfg.cutmix_alpha:
        mixers.append(keras_cv.layers.CutMix(alpha=cfg.cutmix_alpha, seed=cfg.seed))
    if not image_layers and not mixers:
        return None

    def augment(images, labels):
        images = tf.cast(images, tf.float32)
        for layer in image_layers:
            images = layer(images, training=True)
            images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
        images = tf.ensure_shape(images, [None, image_size, image_size, 3])
        labels = tf.cast(labels, tf.float32)
        for mixer in mixers:
            out = mixer({"images": images, "labels": labels}, training=True)
            # blends of two in-range images can overshoot 255 by float rounding
            images = tf.clip_by_value(tf.cast(out["images"], tf.float32), 0.0, 255.0)
            labels = out["labels"]
        return images, labels

    return augment


def preview_grid(images, columns: int = 4):
    """uint8 numpy grid of a batch of [0, 255] images (for `visionpipe augment-preview`)."""
    import numpy as np

    images = np.clip(np.asarray(images), 0, 255).astype("uint8")
    n, h, w, c = images.shape
    rows = (n + columns - 1) // columns
    grid = np.full((rows * (h + 2), columns * (w + 2), c), 255, dtype="uint8")
    for i, image in enumerate(images):
        r, col = divmod(i, columns)
        grid[r * (h + 2) + 1:r * (h + 2) + 1 + h, col * (w + 2) + 1:col * (w + 2) + 1 + w] = image
    return grid
