"""Explanations of a Keras model's score on its input pixels: Grad-CAM, Grad-CAM++, vanilla
and SmoothGrad saliency, occlusion sensitivity. Task-agnostic: the explained quantity is
``target(outputs) -> [B]`` (default: the score of one class id per image, which is what a
classifier's or multi-label model's output row holds).

Written on ``tf.GradientTape`` (a few lines each) rather than a library: tf-keras-vis,
tf-explain, lime and shap are not in the lock (``constraints/py310.txt``).

Every map is float32 ``[B, H, W]`` at the model input's size, scaled per image to [0, 1].
Images are what the model takes: float32 pixels in [0, 255].
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence, Union

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

METHODS = ("gradcam", "gradcam++", "saliency", "smoothgrad", "occlusion")

Target = Callable[[tf.Tensor], tf.Tensor]


def class_target(class_ids: Union[int, Sequence[int], np.ndarray]) -> Target:
    """``outputs[i, class_ids[i]]`` (one id for every image when ``class_ids`` is an int)."""
    def target(outputs):
        ids = tf.cast(tf.broadcast_to(tf.constant(class_ids), tf.shape(outputs)[:1]), tf.int32)
        return tf.gather(outputs, ids, axis=1, batch_dims=1)
    return target


def predicted_target(model: tf.keras.Model, images) -> tuple:
    """(the arg-max class id of each image, its target) for explaining what the model chose."""
    ids = np.argmax(model(tf.convert_to_tensor(images, tf.float32), training=False).numpy(), -1)
    return ids, class_target(ids)


def last_conv_layer(model: tf.keras.Model) -> str:
    """The name of the last top-level layer whose output is a 4-D feature map (a nested
    backbone model counts as one layer), the layer Grad-CAM weighs."""
    channels = model.inputs[0].shape[-1]
    for layer in reversed(model.layers):
        if isinstance(layer, tf.keras.layers.InputLayer):
            continue
        shape = _output_of(layer).shape
        # not the input normalisation (no trainable weights, the input's channels)
        if len(shape) == 4 and (layer.trainable_weights or shape[-1] != channels):
            return layer.name
    raise ValueError(f"model {model.name!r} has no layer with a 4-D output to explain")


def _output_of(layer) -> tf.Tensor:
    # A nested model (the backbone) has its own graph's node first; the outer call is last.
    return layer.get_output_at(len(layer.inbound_nodes) - 1)


def feature_model(model: tf.keras.Model, layer_name: Optional[str] = None) -> tf.keras.Model:
    """pixels -> (the feature map of ``layer_name`` (default: ``last_conv_layer``), outputs)."""
    layer = model.get_layer(layer_name or last_conv_layer(model))
    return tf.keras.Model(model.inputs, [_output_of(layer), model.outputs[0]])


def _normalise(maps: tf.Tensor) -> np.ndarray:
    maps = tf.convert_to_tensor(maps, tf.float32)
    low = tf.reduce_min(maps, axis=[1, 2], keepdims=True)
    high = tf.reduce_max(maps, axis=[1, 2], keepdims=True)
    return ((maps - low) / tf.maximum(high - low, 1e-12)).numpy()


def _resize(maps: tf.Tensor, size) -> tf.Tensor:
    return tf.image.resize(maps[..., None], size, method="bilinear")[..., 0]


def gradcam(model: tf.keras.Model, images, target: Target, layer_name: Optional[str] = None,
            plus_plus: bool = False) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017): ReLU of the feature maps weighted by the spatial mean
    of the target's gradient; ``plus_plus``: Grad-CAM++'s weights (Chattopadhay et al. 2018,
    the closed form for an exponential score)."""
    images = tf.convert_to_tensor(images, tf.float32)
    features_of = feature_model(model, layer_name)
    with tf.GradientTape() as tape:
        features, outputs = features_of(images, training=False)
        score = target(outputs)
    grads = tape.gradient(score, features)
    if plus_plus:
        g2, g3 = grads ** 2, grads ** 3
        total = tf.reduce_sum(features, axis=[1, 2], keepdims=True)
        alpha = g2 / tf.where(tf.abs(2 * g2 + total * g3) > 1e-12, 2 * g2 + total * g3, 1.0)
        weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=[1, 2], keepdims=True)
    else:
        weights = tf.reduce_mean(grads, axis=[1, 2], keepdims=True)
    cam = tf.nn.relu(tf.reduce_sum(weights * features, axis=-1))
    return _normalise(_resize(cam, images.shape[1:3]))


def saliency(model: tf.keras.Model, images, target: Target, samples: int = 0,
             noise: float = 0.15 * 255, seed: int = 0) -> np.ndarray:
    """|d target / d pixel| (max over channels); ``samples > 0``: SmoothGrad (Smilkov et al.
    2017), the mean over ``samples`` copies with Gaussian noise of ``noise`` pixel units."""
    images = tf.convert_to_tensor(images, tf.float32)
    rng = tf.random.Generator.from_seed(seed)
    total = tf.zeros_like(images)
    for _ in range(max(samples, 1)):
        noisy = images + rng.normal(tf.shape(images), stddev=noise) if samples else images
        with tf.GradientTape() as tape:
            tape.watch(noisy)
            score = target(model(noisy, training=False))
        total += tf.abs(tape.gradient(score, noisy))
    return _normalise(tf.reduce_max(total, axis=-1))


def occlusion_map(model: tf.keras.Model, images, target: Target, patch: int = 0,
                  stride: int = 0, fill: float = 127.5, batch_size: int = 64) -> np.ndarray:
    """Occlusion sensitivity (Zeiler & Fergus 2014): how much the target drops when a grey
    ``patch`` x ``patch`` square (default: a quarter of the side) covers each place."""
    images = np.asarray(images, np.float32)
    n, height, width, _ = images.shape
    patch = patch or max(1, min(height, width) // 4)
    stride = stride or max(1, patch // 2)
    clean = target(model(images, training=False)).numpy()
    drop = np.zeros((n, height, width), np.float32)
    counts = np.zeros((height, width), np.float32)
    places = [(y, x) for y in range(0, max(height - patch, 0) + 1, stride)
              for x in range(0, max(width - patch, 0) + 1, stride)]
    for y, x in places:
        covered = images.copy()
        covered[:, y:y + patch, x:x + patch] = fill
        scores = np.concatenate([target(model(covered[i:i + batch_size], training=False)).numpy()
                                 for i in range(0, n, batch_size)])
        drop[:, y:y + patch, x:x + patch] += (clean - scores)[:, None, None]
        counts[y:y + patch, x:x + patch] += 1
    return _normalise(drop / np.maximum(counts, 1))


def explain(model: tf.keras.Model, images, target: Target, method: str = "gradcam",
            layer_name: Optional[str] = None) -> np.ndarray:
    """One of ``METHODS``."""
    if method == "gradcam":
        return gradcam(model, images, target, layer_name)
    if method == "gradcam++":
        return gradcam(model, images, target, layer_name, plus_plus=True)
    if method == "saliency":
        return saliency(model, images, target)
    if method == "smoothgrad":
        return saliency(model, images, target, samples=16)
    if method == "occlusion":
        return occlusion_map(model, images, target)
    raise ValueError(f"unknown explanation method {method!r}; one of {METHODS}")


def peak(heatmap: np.ndarray) -> tuple:
    """(row, column) of a map's maximum."""
    return tuple(int(v) for v in np.unravel_index(np.argmax(heatmap), heatmap.shape))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """uint8 RGB: the image blended with the heatmap in matplotlib's 'jet' colours."""
    from matplotlib import colormaps

    colours = colormaps["jet"](np.clip(heatmap, 0, 1))[..., :3] * 255.0
    blended = (1 - alpha) * np.asarray(image, np.float32) + alpha * colours
    return np.clip(blended, 0, 255).astype(np.uint8)
