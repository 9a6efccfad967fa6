"""Augmentation for the training tf.data pipeline: one builder that maps ``augment.*`` to
keras-cv layers once and runs them in one of three modes, by what the targets are.

| mode     | targets                                  | what moves them                            |
|----------|------------------------------------------|--------------------------------------------|
| labels   | one-hot / multi-hot labels ``[B, C]``    | MixUp and CutMix mix them; nothing else    |
| boxes    | keras-cv dense boxes ``{"boxes": [B, N, 4] pixel yxyx, "classes": [B, N]}`` | geometric layers in bounding-box mode |
| masks    | class-id masks ``[B, h, w(, 1)]``          | geometric layers, nearest-neighbour on the mask |

Photometric layers (brightness, contrast, gamma, saturation, hue, noise, cutout) see the
images only, in every mode. ``OPS`` is the one table: which ``augment.*`` keys an op reads,
the modes it runs in and the keras-cv layer it builds there; ``honoured_keys(mode)`` is what
a task declares as its ``augment_keys``. Images are float32 pixels in [0, 255] of the model
input, ``(h, w)``; evaluation and serving never call this.

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
from dataclasses import dataclass
from typing import Callable, Dict, List, Optional, Sequence, Tuple

import visionpipe  # noqa: F401
import keras_cv
import tensorflow as tf
from keras_cv.src.utils import fill_utils
from keras_cv.src.utils import preprocessing as preprocessing_utils

from visionpipe.models.preprocessing import hw

VALUE_RANGE = (0, 255)
BOX_FORMAT = "yxyx"  # keras-cv boxes in pixels of the model input
LABELS, BOXES, MASKS = "labels", "boxes", "masks"
MODES = (LABELS, BOXES, MASKS)


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


class RandomRotation(keras_cv.layers.RandomRotation):
    """keras-cv's RandomRotation; a mask of class ids rotates with the image's transform,
    nearest-neighbour (keras-cv one-hot encodes it instead, which needs the class count and
    turns an id outside it, e.g. an ignore id 255, into 0)."""

    def augment_segmentation_masks(self, segmentation_masks, transformations, **kwargs):
        masks = preprocessing_utils.ensure_tensor(segmentation_masks, self.compute_dtype)
        shape = tf.shape(masks)
        height, width = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
        outputs = preprocessing_utils.transform(
            masks, preprocessing_utils.get_rotation_matrix(transformations["angles"], height, width),
            fill_mode=self.fill_mode, fill_value=self.fill_value, interpolation="nearest")
        outputs.set_shape(masks.shape)
        return outputs


# --- the one table: augment.* -> keras-cv layers, per mode --------------------------------
GEOMETRIC, PHOTOMETRIC, MIXING = "geometric", "photometric", "mixing"


@dataclass(frozen=True)
class Op:
    """One ``augment.*`` option: the keys it reads, the modes it runs in, what it does to the
    targets (geometric: moves them; photometric: images only; mixing: blends images and
    labels) and ``build(cfg, (h, w), mode)`` -> the keras-cv layer, or None when it is off."""

    keys: Tuple[str, ...]
    modes: Tuple[str, ...]
    kind: str
    build: Callable


def _flip(cfg, size, mode):
    flip_mode = {(True, True): "horizontal_and_vertical", (True, False): "horizontal",
                 (False, True): "vertical"}.get((cfg.horizontal_flip, cfg.vertical_flip))
    if not flip_mode:
        return None
    box_format = {"bounding_box_format": BOX_FORMAT} if mode == BOXES else {}
    return keras_cv.layers.RandomFlip(flip_mode, **box_format)


def _random_resized_crop(cfg, size, mode):
    if not cfg.random_crop:
        return None
    if mode == LABELS:
        return keras_cv.layers.RandomCropAndResize(
            target_size=size, crop_area_factor=((1.0 - cfg.random_crop) ** 2, 1.0),
            aspect_ratio_factor=(3 / 4, 4 / 3))
    # masks: RandomCropAndResize runs per image on images only; a scale-up by up to
    # 1 / (1 - random_crop) then a random (h, w) crop is the same cut, at a fixed aspect,
    # and never pads (a pad would write id 0 into the mask).
    return keras_cv.layers.JitteredResize(target_size=size,
                                          scale_factor=(1.0, 1.0 / (1.0 - cfg.random_crop)))


def _scale_jitter(cfg, size, mode):
    # boxes: zoom and random_crop are one scale jitter, then a random crop back to (h, w): a
    # random resized crop that keeps boxes (JitteredResize pads when the scaled image is
    # smaller than the target).
    jitter = max(cfg.zoom, cfg.random_crop)
    if jitter <= 0:
        return None
    return keras_cv.layers.JitteredResize(target_size=size, scale_factor=(1.0 - jitter, 1.0 + jitter),
                                          bounding_box_format=BOX_FORMAT)


def _rotation(cfg, size, mode):
    return RandomRotation(cfg.rotation, fill_mode="reflect") if cfg.rotation else None


def _zoom(cfg, size, mode):
    return keras_cv.layers.RandomZoom((-cfg.zoom, cfg.zoom), fill_mode="reflect") if cfg.zoom else None


def _translation(cfg, size, mode):
    if not cfg.translation:
        return None
    if mode == BOXES:
        # a reflected border would show mirrored objects that have no box
        return keras_cv.layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="constant",
                                                 bounding_box_format=BOX_FORMAT)
    return keras_cv.layers.RandomTranslation(cfg.translation, cfg.translation, fill_mode="reflect")


def _shear(cfg, size, mode):
    if not cfg.shear:
        return None
    return keras_cv.layers.RandomShear(x_factor=cfg.shear, y_factor=cfg.shear, fill_mode="reflect")


def _brightness(cfg, size, mode):
    return keras_cv.layers.RandomBrightness(cfg.brightness, value_range=VALUE_RANGE) if cfg.brightness else None


def _contrast(cfg, size, mode):
    return keras_cv.layers.RandomContrast(VALUE_RANGE, cfg.contrast) if cfg.contrast else None


def _gamma(cfg, size, mode):
    return RandomGamma(cfg.gamma) if cfg.gamma else None


def _saturation(cfg, size, mode):
    # keras-cv's saturation factor 0.5 is the identity
    if not cfg.saturation:
        return None
    return keras_cv.layers.RandomSaturation((0.5 - cfg.saturation / 2, 0.5 + cfg.saturation / 2))


def _hue(cfg, size, mode):
    return keras_cv.layers.RandomHue(cfg.hue, VALUE_RANGE) if cfg.hue else None


def _randaugment(cfg, size, mode):
    if not cfg.randaugment_magnitude:
        return None
    return keras_cv.layers.RandAugment(VALUE_RANGE, augmentations_per_image=cfg.randaugment_ops,
                                       magnitude=cfg.randaugment_magnitude)


def _gaussian_noise(cfg, size, mode):
    return GaussianNoise(cfg.gaussian_noise) if cfg.gaussian_noise else None


def _cutout(cfg, size, mode):
    if not cfg.cutout:
        return None
    if mode == BOXES:
        # patches of up to the factor, neutral grey: a patch rarely hides a whole object
        # whose box stays a training target
        return RandomCutout((0.0, cfg.cutout), (0.0, cfg.cutout), fill_mode="constant", fill_value=127.5)
    return RandomCutout(cfg.cutout, cfg.cutout, fill_mode="gaussian_noise")


def _mixup(cfg, size, mode):
    return MixUp(alpha=cfg.mixup_alpha) if cfg.mixup_alpha else None


def _cutmix(cfg, size, mode):
    return CutMix(alpha=cfg.cutmix_alpha) if cfg.cutmix_alpha else None


ALL = MODES
#: in pipeline order; no seeds are handed to the layers: SeededLayer gives them the batch's
#: stateless seed. RandAugment's geometric ops and the per-image RandomCropAndResize do not
#: move boxes or masks here, so they run in label mode only; rotation and shear would turn
#: boxes into loose enclosing boxes, so box mode leaves them out.
OPS: Tuple[Op, ...] = (
    Op(("horizontal_flip", "vertical_flip"), ALL, GEOMETRIC, _flip),
    Op(("random_crop",), (LABELS, MASKS), GEOMETRIC, _random_resized_crop),
    Op(("zoom", "random_crop"), (BOXES,), GEOMETRIC, _scale_jitter),
    Op(("rotation",), (LABELS, MASKS), GEOMETRIC, _rotation),
    Op(("zoom",), (LABELS, MASKS), GEOMETRIC, _zoom),
    Op(("translation",), ALL, GEOMETRIC, _translation),
    Op(("shear",), (LABELS, MASKS), GEOMETRIC, _shear),
    Op(("brightness",), ALL, PHOTOMETRIC, _brightness),
    Op(("contrast",), ALL, PHOTOMETRIC, _contrast),
    Op(("gamma",), ALL, PHOTOMETRIC, _gamma),
    Op(("saturation",), ALL, PHOTOMETRIC, _saturation),
    Op(("hue",), ALL, PHOTOMETRIC, _hue),
    Op(("randaugment_magnitude", "randaugment_ops"), (LABELS,), PHOTOMETRIC, _randaugment),
    Op(("gaussian_noise",), ALL, PHOTOMETRIC, _gaussian_noise),
    Op(("cutout",), ALL, PHOTOMETRIC, _cutout),
    Op(("mixup_alpha",), (LABELS,), MIXING, _mixup),
    Op(("cutmix_alpha",), (LABELS,), MIXING, _cutmix),
)


def _check_mode(mode: str) -> None:
    if mode not in MODES:
        raise ValueError(f"unknown augmentation mode {mode!r}; choose one of {MODES}")


def honoured_keys(mode: str) -> Tuple[str, ...]:
    """The ``augment.*`` keys ``mode`` applies (``enabled`` and ``seed`` always): what a task
    augmenting in that mode declares as ``augment_keys``."""
    _check_mode(mode)
    keys = ["enabled", "seed"]
    for op in OPS:
        if mode in op.modes:
            keys.extend(k for k in op.keys if k not in keys)
    return tuple(keys)


@dataclass
class _Step:
    layer: "SeededLayer"
    kind: str


class Augmenter:
    """Batched augmentation in one mode (see ``build_augmenter``); call it as

    - labels: ``augmenter(images, labels, seed) -> (images, labels)``
    - boxes: ``augmenter(images, {"boxes", "classes"}, seed) -> (images, {"boxes", "classes"})``
    - masks: ``augmenter(images, masks, seed) -> (images, masks)`` (int ids, rank kept)

    ``seed``: the batch's stateless seed (int64 ``[2]``, or an int); default ``augment.seed``.
    The same inputs and seed always give the same output."""

    def __init__(self, cfg, image_size, mode: str = LABELS, layers: Sequence[tuple] = ()):
        _check_mode(mode)
        self.seed = cfg.seed
        self.mode = mode
        self.image_size = hw(image_size)
        self.steps = [_Step(SeededLayer(layer), kind) for layer, kind in layers]

    @property
    def layer_names(self) -> List[str]:
        return [step.layer.name for step in self.steps]

    @property
    def image_layers(self) -> List["SeededLayer"]:
        return [step.layer for step in self.steps if step.kind != MIXING]

    @property
    def mixers(self) -> List["SeededLayer"]:
        return [step.layer for step in self.steps if step.kind == MIXING]

    def __call__(self, images, targets, seed=None):
        if self.mode == LABELS:
            data = self.apply({"images": images, "labels": tf.cast(targets, tf.float32)}, seed)
            return data["images"], data["labels"]
        if self.mode == BOXES:
            data = self.apply({"images": images, "bounding_boxes": {
                "boxes": tf.cast(targets["boxes"], tf.float32),
                "classes": tf.cast(targets["classes"], tf.float32)}}, seed)
            return data["images"], data["bounding_boxes"]
        masks = tf.convert_to_tensor(targets)
        rank = masks.shape.rank
        data = self.apply({"images": images, "segmentation_masks": tf.cast(
            masks[..., None] if rank == 3 else masks, tf.float32)}, seed)
        out = tf.cast(tf.round(data["segmentation_masks"]), masks.dtype)
        return data["images"], (out[..., 0] if rank == 3 else out)

    def apply(self, data: Dict[str, tf.Tensor], seed=None,
              on_layer: Optional[Callable[[int, "SeededLayer", dict], None]] = None) -> dict:
        """Run the layers on a keras-cv dict (``images`` + ``labels`` | ``bounding_boxes`` |
        ``segmentation_masks``): geometric layers get the dict, photometric ones the images,
        mixers images and labels. ``on_layer(index, layer, data)`` sees the data after each."""
        seed = as_seed(self.seed if seed is None else seed)
        data = dict(data)
        data["images"] = tf.cast(data["images"], tf.float32)
        for index, step in enumerate(self.steps):
            layer_input = (data["images"] if step.kind == PHOTOMETRIC or
                           (step.kind == GEOMETRIC and self.mode == LABELS) else
                           {"images": data["images"], "labels": data["labels"]} if step.kind == MIXING
                           else data)
            out = step.layer(layer_input, layer_seed(seed, index))
            if isinstance(out, dict):
                data.update(out)
            else:
                data["images"] = out
            # blends of two in-range images can overshoot 255 by float rounding
            data["images"] = tf.clip_by_value(tf.cast(data["images"], tf.float32), 0.0, 255.0)
            if "bounding_boxes" in data:
                data["bounding_boxes"] = _dense_boxes(data["bounding_boxes"])
            if on_layer is not None:
                on_layer(index, step.layer, data)
        data["images"] = tf.ensure_shape(data["images"], [None, *self.image_size, 3])
        return data


def _dense_boxes(bounding_boxes):
    if isinstance(bounding_boxes["boxes"], tf.RaggedTensor):
        bounding_boxes = keras_cv.bounding_box.to_dense(bounding_boxes)
    return {"boxes": tf.cast(bounding_boxes["boxes"], tf.float32),
            "classes": tf.cast(bounding_boxes["classes"], tf.float32)}


def build_layers(cfg, image_size, mode: str = LABELS, mosaic: bool = False) -> List[tuple]:
    """``[(keras-cv layer, kind)]`` of ``OPS`` that are on in ``cfg`` for ``mode``; ``mosaic``
    (box and mask modes) puts keras-cv's Mosaic first, as it composes four images."""
    _check_mode(mode)
    size = hw(image_size)
    layers = []
    if mosaic:
        if mode == LABELS:
            raise ValueError("Mosaic composes boxes or masks; label mode has no Mosaic")
        box_format = {"bounding_box_format": BOX_FORMAT} if mode == BOXES else {}
        layers.append((keras_cv.layers.Mosaic(**box_format), GEOMETRIC))
    for op in OPS:
        if mode in op.modes:
            layer = op.build(cfg, size, mode)
            if layer is not None:
                layers.append((layer, op.kind))
    return layers


def build_augmenter(cfg, image_size, mode: str = LABELS, mosaic: bool = False,
                    always: bool = False) -> Optional[Augmenter]:
    """The Augmenter of ``augment.*`` (``cfg``) in ``mode`` for batched training data at
    ``image_size`` (int or ``(h, w)``), or None when augmentation is disabled or nothing is
    on (``always``: an Augmenter even then, one that changes nothing). Build it eagerly
    (outside tf.data functions)."""
    if not cfg.enabled and not always:
        return None
    layers = build_layers(cfg, image_size, mode, mosaic) if cfg.enabled else []
    if not layers and not always:
        return None
    return Augmenter(cfg, image_size, mode, layers)


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
