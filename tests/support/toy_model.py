"""A tiny classifier SavedModel written by VisionPipe's real export code.

Tests, the serving benchmark and `visionpipe serve` smoke runs need a pushed model without
running the training pipeline. ``write_toy_classifier`` builds a Keras model with fixed,
seeded weights (a linear head, optionally after a few strided convolutions) and exports it
with ``visionpipe.models.export.export_saved_model`` and the real ``classification`` task: the
signatures, the method names, ``assets/labels.txt``, the task file and the warm-up requests
are the ones a trained classifier gets (the server never looks inside the model).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import visionpipe  # noqa: F401
import numpy as np
import tensorflow as tf

from visionpipe.core import features
from visionpipe.models import export, preprocessing
from visionpipe.serving.servable import REGRESS_METHOD
from visionpipe.tasks.classification.task import ClassificationTask


class _RegressingClassifier(ClassificationTask):
    """The classification task plus a ``serving_regress`` signature (tensorflow/serving/regress
    on the same serialized Examples: the top class probability), which the export contract
    does not have, for the Regress and MultiInference tests. Not registered."""

    signature_methods = {**ClassificationTask.signature_methods, "serving_regress": REGRESS_METHOD}

    def signatures(self, model):
        signatures = super().signatures(model)
        size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serving_regress(inputs):
            parsed = features.parse_examples(inputs, keys=[features.ENCODED])
            pixels = preprocessing.preprocess_batch(parsed[features.ENCODED], size)
            return {"outputs": tf.reduce_max(model(pixels, training=False), axis=1)}

        signatures["serving_regress"] = serving_regress.get_concrete_function()
        return signatures


def toy_keras_model(num_classes: int, image_size: int, seed: int, conv_filters: int = 0) -> tf.keras.Model:
    """pixels [0, 255] -> [-1, 1] -> (``conv_filters``: three 3x3 stride-2 ReLU convolutions)
    -> global mean -> a linear layer -> softmax ``probabilities``; weights drawn from ``seed``."""
    rng = np.random.default_rng(seed)
    inputs = tf.keras.Input((image_size, image_size, 3), name="pixels")
    x = tf.keras.layers.Rescaling(1 / 127.5, offset=-1.0, name="normalize")(inputs)
    kernels = [rng.normal(0, 0.1, (3, 3, c_in, conv_filters)).astype("float32")
               for c_in in ([3] + [conv_filters] * 2)] if conv_filters else []
    convolutions = [tf.keras.layers.Conv2D(conv_filters, 3, strides=2, padding="same", use_bias=False,
                                           activation="relu", name=f"conv{i}")
                    for i in range(len(kernels))]
    for layer in convolutions:
        x = layer(x)
    x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
    head = tf.keras.layers.Dense(num_classes, name="logits")
    x = head(x)
    outputs = tf.keras.layers.Activation("softmax", dtype="float32", name="probabilities")(x)
    model = tf.keras.Model(inputs, outputs, name="toy_classifier")
    for layer, kernel in zip(convolutions, kernels):
        layer.set_weights([kernel])
    features_dim = conv_filters or 3
    head.set_weights([rng.normal(0, 1, (features_dim, num_classes)).astype("float32"),
                      rng.normal(0, 1, (num_classes,)).astype("float32")])
    return model


def encode_png(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(pixels, tf.uint8)).numpy()


def sample_image(size: int = 32, seed: int = 0) -> bytes:
    """PNG bytes of a random RGB image."""
    return encode_png(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def write_toy_classifier(export_dir: str | Path, class_names: Sequence[str] = ("cat", "dog", "bird"),
                         image_size: int = 32, top_k: int = 2, seed: int = 0,
                         conv_filters: int = 0, model_name: str = "toy", regression: bool = False) -> Path:
    """Export a toy classifier at ``export_dir`` (e.g. <base>/<version>) with the real export.

    ``regression`` adds a ``serving_regress`` signature (see ``_RegressingClassifier``)."""
    from visionpipe.core.config import load_config

    config = load_config(overrides=[f"model.image_size={image_size}", f"model.top_k={top_k}"])
    task_class = _RegressingClassifier if regression else ClassificationTask
    task = task_class(config, list(class_names))
    model = toy_keras_model(len(class_names), image_size, seed, conv_filters)
    export.export_saved_model(model, task, str(export_dir), [sample_image(image_size, seed)],
                              model_name)
    return Path(export_dir)
