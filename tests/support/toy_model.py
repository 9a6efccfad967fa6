"""A tiny classifier SavedModel that follows VisionPipe's export contract.

Tests, the serving benchmark and `visionpipe serve` smoke runs need a pushed model without
running the training pipeline. This writes the same signatures, warm-up file and class-name
asset that ``visionpipe.models.export`` writes for a trained classifier, with a fixed random
linear head instead of a trained network (the server never looks inside the model).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

import visionpipe  # noqa: F401
import numpy as np
import tensorflow as tf

from visionpipe.core import features
from visionpipe.models import preprocessing
from visionpipe.serving.servable import CLASSIFY_METHOD, REGRESS_METHOD
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")


class _ToyClassifier(tf.Module):
    def __init__(self, class_names: Sequence[str], image_size: int, top_k: int, seed: int,
                 conv_filters: int):
        super().__init__()
        rng = np.random.default_rng(seed)
        self.image_size = image_size
        self.top_k = min(top_k, len(class_names))
        self.class_names = tf.constant(list(class_names))
        # A few conv layers let the benchmark use a model whose cost resembles a small CNN.
        self.kernels = [tf.Variable(rng.normal(0, 0.1, (3, 3, c_in, conv_filters)).astype("float32"))
                        for c_in in ([3] + [conv_filters] * 2)] if conv_filters else []
        features_dim = conv_filters if conv_filters else 3
        self.weights = tf.Variable(rng.normal(0, 1, (features_dim, len(class_names))).astype("float32"))
        self.bias = tf.Variable(rng.normal(0, 1, (len(class_names),)).astype("float32"))

    def outputs(self, pixels: tf.Tensor):
        x = pixels / 127.5 - 1.0
        for kernel in self.kernels:
            x = tf.nn.relu(tf.nn.conv2d(x, kernel, strides=2, padding="SAME"))
        pooled = tf.reduce_mean(x, axis=[1, 2])
        probabilities = tf.nn.softmax(pooled @ self.weights + self.bias)
        scores, ids = tf.math.top_k(probabilities, k=self.top_k)
        return {
            "probabilities": probabilities,
            "top_k_ids": tf.cast(ids, tf.int32),
            "top_k_names": tf.gather(self.class_names, ids),
            "top_k_scores": scores,
        }

    def signatures(self, regression: bool = False):
        size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serving_default(images):
            return self.outputs(preprocessing.preprocess_batch(images, size))

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serving_examples(inputs):
            parsed = features.parse_examples(inputs, keys=[features.ENCODED])
            probabilities = self.outputs(
                preprocessing.preprocess_batch(parsed[features.ENCODED], size))["probabilities"]
            batch = tf.shape(probabilities)[0]
            classes = tf.tile(self.class_names[tf.newaxis], [batch, 1])
            return {"classes": classes, "scores": probabilities}

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")])
        def serving_tensor(pixels):
            return self.outputs(pixels)

        signatures = {
            "serving_default": serving_default.get_concrete_function(),
            "serving_examples": serving_examples.get_concrete_function(),
            "serving_tensor": serving_tensor.get_concrete_function(),
        }
        if regression:
            @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
            def serving_regress(inputs):  # the top class probability, as one value per example
                parsed = features.parse_examples(inputs, keys=[features.ENCODED])
                pixels = preprocessing.preprocess_batch(parsed[features.ENCODED], size)
                return {"outputs": tf.reduce_max(self.outputs(pixels)["probabilities"], axis=1)}

            signatures["serving_regress"] = serving_regress.get_concrete_function()
        return signatures


def encode_png(pixels: np.ndarray) -> bytes:
    return tf.io.encode_png(tf.constant(pixels, tf.uint8)).numpy()


def sample_image(size: int = 32, seed: int = 0) -> bytes:
    """PNG bytes of a random RGB image."""
    return encode_png(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def write_warmup_requests(export_dir: str | Path, model_name: str, images: Sequence[bytes]) -> Path:
    """assets.extra/tf_serving_warmup_requests: PredictionLogs as TF Serving replays them."""
    from tensorflow_serving.apis import predict_pb2, prediction_log_pb2

    path = Path(export_dir) / WARMUP_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path)) as writer:
        request = predict_pb2.PredictRequest()
        request.model_spec.name = model_name
        request.model_spec.signature_name = "serving_default"
        request.inputs["images"].CopyFrom(tf.make_tensor_proto(list(images), dtype=tf.string))
        log = prediction_log_pb2.PredictionLog(
            predict_log=prediction_log_pb2.PredictLog(request=request))
        writer.write(log.SerializeToString())
    return path


def mark_signature_method(export_dir: str | Path, signature_name: str = "serving_examples",
                            method_name: str = CLASSIFY_METHOD) -> None:
    """Set the signature's method_name so TF Serving's Classify (or Regress) API accepts it."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = Path(export_dir) / "saved_model.pb"
    saved_model = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    for meta_graph in saved_model.meta_graphs:
        if signature_name in meta_graph.signature_def:
            meta_graph.signature_def[signature_name].method_name = method_name
    pb_path.write_bytes(saved_model.SerializeToString())


def write_toy_classifier(export_dir: str | Path, class_names: Sequence[str] = ("cat", "dog", "bird"),
                         image_size: int = 32, top_k: int = 2, seed: int = 0,
                         conv_filters: int = 0, model_name: str = "toy", regression: bool = False) -> Path:
    """Save a contract-conforming classifier at ``export_dir`` (e.g. <base>/<version>).

    ``regression`` adds a ``serving_regress`` signature (tensorflow/serving/regress on the same
    serialized Examples), which the export contract does not have, for Regress/MultiInference."""
    export_dir = Path(export_dir)
    module = _ToyClassifier(class_names, image_size, top_k, seed, conv_filters)
    tf.saved_model.save(module, str(export_dir), signatures=module.signatures(regression))
    mark_signature_method(export_dir)
    if regression:
        mark_signature_method(export_dir, "serving_regress", REGRESS_METHOD)
    (export_dir / "assets").mkdir(exist_ok=True)
    (export_dir / "assets" / "class_names.txt").write_text("\n".join(class_names) + "\n")
    write_warmup_requests(export_dir, model_name, [sample_image(image_size, seed)])
    return export_dir
