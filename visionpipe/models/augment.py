"""Image-level augmentation for the training tf.data pipeline, built from keras-cv layers.

Works on batches of float32 pixels in [0, 255] with one-hot (or multi-hot) labels, so MixUp
and CutMix can mix labels too. Evaluation and serving never call it. Tasks whose targets
move with the image (boxes, masks) use their own target-aware augmentation.

Reproducibility: every random draw is a *stateless* op whose seed comes from the batch (see
``data.augment_batches``: batch ``i`` gets the seed ``(augment.seed, i)``), so the same seed
gives the same augmented batches whatever the thread timing of the parallel ``map``, and
successive batches and epochs differ. keras-cv layers draw from a ``tf.random.Generator`` (one
state variable per layer, shared by all concurrent ``map`` calls, so the order of the draws
followed thread timing) and from factor samplers that call ``tf.random.uniform`` (stateful,
often unseeded); ``SeededLayer`` replaces both with ``StatelessRNG``, which folds the batch
seed with each draw's position in the traced graph.
"""
from __future__ import annotations

import contextlib
from typing import List, Optional

import visionpipe  # noqa: F401
import keras_cv
import tensorflow as tf
from keras_cv.src.utils import fill_utils

from visionpipe.models.preprocessing import hw

VALUE_RANGE = (0, 255)


def as_seed(seed) -> tf.Tensor:
    """A stateless seed, int64 ``[2]``, from an int (``(seed, 0)``) or a ``[2]`` tensor."""
    seed = tf.cast(tf.convert_to_tensor(seed), tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.constant(0, tf.int64)])
    return tf.ensure_shape(seed, [2])


class StatelessRNG:
    """Stands in for a keras-cv layer's ``tf.random.Generator`` and factor samplers.

    Every draw is a stateless op seeded with the seed bound by ``bind`` folded with a counter
    that counts the draws made while tracing under that binding, so each draw site in the graph
    gets its own stream and a retrace gives the same graph."""

    def __init__(self):
        self._frames: List[list] = []

    @contextlib.contextmanager
    def bind(self, seed):
        self._frames.append([as_seed(seed), 0])
        try:
            yield self
        finally:
            self._frames.pop()

    def next_seed(self) -> tf.Tensor:
        if not self._frames:
            raise RuntimeError("an augmentation layer drew a random number outside "
                               "StatelessRNG.bind: call it through SeededLayer with a seed")
        frame = self._frames[-1]
        frame[1] += 1
        return tf.random.experimental.stateless_fold_in(frame[0], frame[1])

    # the tf.random.Generator methods keras-cv layers call
    def uniform(self, shape, minval=0, maxval=None, dtype=tf.float32, name=None):
        dtype = tf.as_dtype(dtype)
        if dtype.is_integer and maxval is None:
            raise ValueError("integer uniform draws need maxval")
        return tf.random.stateless_uniform(shape, self.next_seed(), minval=minval, maxval=maxval,
                                           dtype=dtype)

    def normal(self, shape, mean=0.0, stddev=1.0, dtype=tf.float32, name=None):
        return tf.random.stateless_normal(shape, self.next_seed(), mean=mean, stddev=stddev, dtype=dtype)

    random_normal = normal

    def gamma(self, shape, alpha, dtype=tf.float32):
        return tf.random.stateless_gamma(shape, self.next_seed(), alpha=alpha, dtype=dtype)

    def beta(self, shape, alpha, beta):
        a, b = self.gamma(shape, alpha), self.gamma(shape, beta)
        return a / (a + b)

    def permutation(self, n):
        return tf.argsort(self.uniform([n]))


class _StatelessFactor(keras_cv.core.FactorSampler):
    """A keras-cv factor sampler drawing from a StatelessRNG (their own calls are stateful)."""

    def __init__(self, sampler, rng: StatelessRNG):
        self.sampler, self.rng = sampler, rng

    def __getattr__(self, name):  # lower/upper/value/... of the wrapped sampler
        if name == "sampler":
            raise AttributeError(name)
        return getattr(self.sampler, name)

    def __call__(self, shape=(), dtype="float32"):
        s = self.sampler
        if isinstance(s, keras_cv.core.UniformFactorSampler):
            return self.rng.uniform(shape, s.lower, s.upper, dtype=dtype)
        if isinstance(s, keras_cv.core.NormalFactorSampler):
            return tf.clip_by_value(self.rng.normal(shape, s.mean, s.stddev, dtype=dtype),
                                    s.min_value, s.max_value)
        if isinstance(s, keras_cv.core.ConstantFactorSampler):
            return s(shape=shape, dtype=dtype)
        raise TypeError(f"no stateless version of {type(s).__name__}")

    def get_config(self):
        return self.sampler.get_config()


def _install(layer: tf.keras.layers.Layer, rng: StatelessRNG) -> None:
    """Point ``layer`` and every layer inside it (RandAugment's) at ``rng``."""
    for sub in layer._flatten_layers(include_self=True, recursive=True):
        # not through Layer.__setattr__: the rng is no trackable state
        object.__setattr__(sub, "_random_generator", rng)
        for name, value in list(vars(sub).items()):
            if isinstance(value, keras_cv.core.FactorSampler) and not isinstance(value, _StatelessFactor):
                object.__setattr__(sub, name, _StatelessFactor(value, rng))


def _per_image(layer) -> bool:
    """keras-cv's non-vectorized layers draw once per image inside their own map over the
    batch; a seed bound outside that map would give every image the same draws."""
    return (isinstance(layer, keras_cv.layers.BaseImageAugmentationLayer)
            and not isinstance(layer, (MixUp, CutMix)))


class SeededLayer:
    """Calls a keras-cv (or our) augmentation layer with stateless draws from a given seed."""

    def __init__(self, layer: tf.keras.layers.Layer):
        self.layer = layer
        self.rng = StatelessRNG()
        self.per_image = _per_image(layer)
        _install(layer, self.rng)

    @property
    def name(self) -> str:
        return type(self.layer).__name__

    def __call__(self, inputs, seed):
        if not self.per_image:
            with self.rng.bind(seed):
                return self.layer(inputs, training=True)
        if not isinstance(inputs, tf.Tensor):
            raise TypeError(f"{self.name} runs per image on an image batch only")
        seeds = tf.random.stateless_uniform([tf.shape(inputs)[0], 2], as_seed(seed), minval=None,
                                            maxval=None, dtype=tf.int64)

        def one(args):
            image, image_seed = args
            with self.rng.bind(image_seed):
                return tf.cast(self.layer(image, training=True), tf.float32)

        if getattr(self.layer, "auto_vectorize", False):
            return tf.vectorized_map(one, (inputs, seeds))
        return tf.map_fn(one, (inputs, seeds), fn_output_signature=tf.float32)


def seeded_layers(layers) -> List[SeededLayer]:
    return [SeededLayer(layer) for layer in layers]


def layer_seed(seed, index: int) -> tf.Tensor:
    """The seed of the ``index``-th layer of a pipeline for a batch seeded ``seed``."""
    return tf.random.experimental.stateless_fold_in(as_seed(seed), index)


class RandomGamma(tf.keras.layers.Layer):
    """Random gamma in [exp(-g), exp(g)] per image (illumination); keras-cv has no gamma layer."""

    def __init__(self, max_log_gamma: float, **kwargs):
        super().__init__(**kwargs)
        self.max_log_gamma = max_log_gamma

    def call(self, images, training=True):
        if not training:
            return images
        batch = tf.shape(images)[0]
        log_gamma = self._random_generator.uniform([batch, 1, 1, 1], -self.max_log_gamma,
                                                   self.max_log_gamma)
        return 255.0 * tf.pow(tf.clip_by_value(images / 255.0, 0.0, 1.0), tf.exp(log_gamma))


class GaussianNoise(tf.keras.layers.Layer):
    """Additive Gaussian noise with stddev given in [0, 1] pixel units, clipped to range."""

    def __init__(self, stddev: float, **kwargs):
        super().__init__(**kwargs)
        self.stddev = stddev

    def call(self, images, training=True):
        if not training:
            return images
        noise = self._random_generator.normal(tf.shape(images), stddev=self.stddev * 255.0)
        return tf.clip_by_value(images + noise, 0.0, 255.0)


class RandomCutout(keras_cv.layers.RandomCutout):
    """keras-cv's RandomCutout; its Gaussian-noise fill called an unseeded ``tf.random.normal``."""

    def _compute_rectangle_fill(self, inputs):
        if self.fill_mode == "constant":
            return super()._compute_rectangle_fill(inputs)
        fill = self._random_generator.normal(tf.shape(inputs), dtype=self.compute_dtype)
        # rescaled to the images' range, as keras-cv does
        image_min, image_max = tf.reduce_min(inputs), tf.reduce_max(inputs)
        fill_min, fill_max = tf.reduce_min(fill), tf.reduce_max(fill)
        return (image_max - image_min) * (fill - fill_min) / (fill_max - fill_min) + image_min


class MixUp(keras_cv.layers.MixUp):
    """keras-cv's MixUp with its draws (unseeded ``tf.random.gamma``/``shuffle``) made stateless."""

    def _mixup(self, images):
        batch_size = tf.shape(images)[0]
        permutation_order = self._random_generator.permutation(batch_size)
        lambda_sample = self._random_generator.beta((batch_size,), self.alpha, self.alpha)
        lambda_sample = tf.cast(tf.reshape(lambda_sample, [-1, 1, 1, 1]), self.compute_dtype)
        mixup_images = tf.cast(tf.gather(images, permutation_order), self.compute_dtype)
        images = lambda_sample * images + (1.0 - lambda_sample) * mixup_images
        return images, tf.squeeze(lambda_sample), permutation_order


class CutMix(keras_cv.layers.CutMix):
    """keras-cv's CutMix with its draws made stateless (same computation otherwise)."""

    def _cutmix(self, images):
        shape = tf.shape(images)
        batch_size, height, width = shape[0], shape[1], shape[2]
        rng = self._random_generator
        permutation_order = rng.permutation(batch_size)
        lambda_sample = rng.beta((batch_size,), self.alpha, self.alpha)
        ratio = tf.math.sqrt(1 - lambda_sample)
        cut_height = tf.cast(ratio * tf.cast(height, tf.float32), tf.int32)
        cut_width = tf.cast(ratio * tf.cast(width, tf.float32), tf.int32)
        center_height = rng.uniform([batch_size], minval=0, maxval=height, dtype=tf.int32)
        center_width = rng.uniform([batch_size], minval=0, maxval=width, dtype=tf.int32)
        area = cut_height * cut_width
        lambda_sample = tf.cast(1.0 - area / (height * width), self.compute_dtype)
        images = fill_utils.fill_rectangle(images, center_width, center_height, cut_width,
                                           cut_height, tf.gather(images, permutation_order))
        return images, lambda_sample, permutation_order, center_height, center_width, cut_width, cut_height


def _image_layers(cfg, image_size) -> List[tf.keras.layers.Layer]:
    # No seed is handed to the layers: SeededLayer gives them the batch's stateless seed.
    cv = keras_cv.layers
    layers: List[tf.keras.layers.Layer] = []
    flip_mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
                 (False, True): "vertical"}.get((cfg.horizontal_flip, cfg.vertical_flip))
    if flip_mode:
        layers.append(cv.RandomFlip(flip_mode))
    if cfg.random_crop:
        layers.append(cv.RandomCropAndResize(
            target_size=hw(image_size), crop_area_factor=((1.0 - cfg.random_crop) ** 2, 1.0),
            aspect_ratio_factor=(3 / 4, 4 / 3)))
    if cfg.rotation:
        layers.append(cv.RandomRotation(cfg.rotation, fill_mode="reflect"))
    if cfg.zoom:
        layers.append(cv.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect"))
    if cfg.translation:
        layers.append(cv.RandomTranslation(cfg.translation, cfg.translation, fill_mode="reflect"))
    if cfg.shear:
        layers.append(cv.RandomShear(x_factor=cfg.shear, y_factor=cfg.shear, fill_mode="reflect"))
    if cfg.brightness:
        layers.append(cv.RandomBrightness(cfg.brightness, value_range=VALUE_RANGE))
    if cfg.contrast:
        layers.append(cv.RandomContrast(VALUE_RANGE, cfg.contrast))
    if cfg.gamma:
        layers.append(RandomGamma(cfg.gamma))
    if cfg.saturation:
        layers.append(cv.RandomSaturation((0.5 - cfg.saturation / 2, 0.5 + cfg.saturation / 2)))
    if cfg.hue:
        layers.append(cv.RandomHue(cfg.hue, VALUE_RANGE))
    if cfg.randaugment_magnitude:
        layers.append(cv.RandAugment(VALUE_RANGE, augmentations_per_image=cfg.randaugment_ops,
                                     magnitude=cfg.randaugment_magnitude))
    if cfg.gaussian_noise:
        layers.append(GaussianNoise(cfg.gaussian_noise))
    if cfg.cutout:
        layers.append(RandomCutout(cfg.cutout, cfg.cutout, fill_mode="gaussian_noise"))
    return layers


class Augmenter:
    """``augmenter(images, labels, seed)`` for batched training data (see ``build_augmenter``)."""

    def __init__(self, cfg, image_size, image_layers, mixers):
        self.seed = cfg.seed
        self.image_size = hw(image_size)
        self.image_layers = seeded_layers(image_layers)
        self.mixers = seeded_layers(mixers)

    @property
    def layer_names(self) -> List[str]:
        return [layer.name for layer in self.image_layers + self.mixers]

    def __call__(self, images, labels, seed=None):
        """``seed``: this batch's stateless seed (int64 ``[2]``, or an int); default
        ``augment.seed``. The same images and seed always give the same output."""
        seed = as_seed(self.seed if seed is None else seed)
        images = tf.cast(images, tf.float32)
        for index, layer in enumerate(self.image_layers):
            images = layer(images, layer_seed(seed, index))
            images = tf.clip_by_value(tf.cast(images, tf.float32), 0.0, 255.0)
        images = tf.ensure_shape(images, [None, *self.image_size, 3])
        labels = tf.cast(labels, tf.float32)
        for index, mixer in enumerate(self.mixers, start=len(self.image_layers)):
            out = mixer({"images": images, "labels": labels}, layer_seed(seed, index))
            # blends of two in-range images can overshoot 255 by float rounding
            images = tf.clip_by_value(tf.cast(out["images"], tf.float32), 0.0, 255.0)
            labels = out["labels"]
        return images, labels


def build_augmenter(cfg, image_size) -> Optional[Augmenter]:
    """An Augmenter, ``(images, labels, seed) -> (images, labels)`` for batched training data,
    or None when nothing is enabled. Build it eagerly (outside tf.data functions)."""
    if not cfg.enabled:
        return None
    image_layers = _image_layers(cfg, image_size)
    mixers = []
    if cfg.mixup_alpha:
        mixers.append(MixUp(alpha=cfg.mixup_alpha))
    if cfg.cutmix_alpha:
        mixers.append(CutMix(alpha=cfg.cutmix_alpha))
    if not image_layers and not mixers:
        return None
    return Augmenter(cfg, image_size, image_layers, mixers)


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
