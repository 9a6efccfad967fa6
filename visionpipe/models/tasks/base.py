"""The one interface every task implements (see shared DESIGN.md).

A task turns parsed Examples into (model input, target) with the shared preprocessing,
augments what is valid for its targets, builds and compiles the model, names the metric
the gate uses, exports the serving signatures (post-processing such as softmax or NMS lives
inside them) and evaluates a TFLite file of itself for the int8 gate.
"""
from __future__ import annotations

import abc
from typing import Dict, List, Sequence

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import preprocessing
from visionpipe.optimize import tflite_convert


class Task(abc.ABC):
    name: str = ""
    #: keys of visionpipe.features this task reads from an Example
    feature_keys: Sequence[str] = ()
    #: the metric the evaluation gate and the int8 gate compare (higher is better)
    gate_metric: str = ""
    #: one class id per example (class weights and oversampling apply)
    single_label: bool = False
    #: the TFLite modes ``convert_tflite`` supports
    tflite_modes: Sequence[str] = tflite_convert.PTQ_MODES
    #: why the optimizer's Keras rewrites (QAT, pruning, distillation, int8 layer repair)
    #: do not apply to this task's model; empty when they do
    keras_rewrites_unsupported: str = ""

    def __init__(self, config, class_names: List[str]):
        self.config = config
        self.class_names = list(class_names)
        self.image_size = config.model.image_size

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    # --- data -------------------------------------------------------------------------
    @abc.abstractmethod
    def example_to_inputs(self, parsed: Dict[str, tf.Tensor]):
        """One parsed Example (visionpipe.features.parse_single) -> (image, target).

        image: float32 [S, S, 3] in [0, 255] from ``preprocessing.preprocess_image``."""

    def augment_batch(self, images, targets, seed):
        """Augment a batch for training (targets move with the image). Default: none.

        ``seed`` is the batch's stateless seed (int64 ``[2]``; ``data.augment_batches`` gives
        batch ``i`` the seed ``(augment.seed, i)``) or an int. Every random draw must derive
        from it (stateless ops), so that the output depends on the images and the seed only,
        not on how the parallel ``map`` calls interleave."""
        return images, targets

    def batch_dataset(self, dataset: tf.data.Dataset, batch_size: int,
                      drop_remainder: bool = False) -> tf.data.Dataset:
        """Batch (image, target) pairs; tasks with variable-length targets pad here."""
        return dataset.batch(batch_size, drop_remainder=drop_remainder)

    # --- model ------------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self) -> tf.keras.Model:
        """Backbone + head; input float32 [None, S, S, 3] in [0, 255]."""

    @abc.abstractmethod
    def compile_model(self, model: tf.keras.Model, learning_rate: float) -> None:
        """Compile with the task's loss and metrics."""

    # --- export -----------------------------------------------------------------------
    @abc.abstractmethod
    def serving_outputs(self, model: tf.keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Model input batch -> the dict every signature returns (post-processing inside)."""

    def examples_outputs(self, model: tf.keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Outputs of ``serving_examples`` (the Evaluator's signature). Default: as serving."""
        return self.serving_outputs(model, images)

    def signatures(self, model: tf.keras.Model) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        """serving_default (encoded bytes), serving_examples (tf.Example), serving_tensor (float)."""
        size = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serving_default(images):
            return self.serving_outputs(model, preprocessing.preprocess_batch(images, size))

        # The input is named ``inputs`` so TF Serving's Classify API accepts the signature
        # (export marks its method_name tensorflow/serving/classify).
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serving_examples(inputs):
            from visionpipe import features

            parsed = features.parse_examples(inputs, keys=[features.ENCODED])
            return self.examples_outputs(
                model, preprocessing.preprocess_batch(parsed[features.ENCODED], size))

        @tf.function(input_signature=[tf.TensorSpec([None, size, size, 3], tf.float32, name="pixels")])
        def serving_tensor(pixels):
            return self.serving_outputs(model, pixels)

        return {
            "serving_default": serving_default.get_concrete_function(),
            "serving_examples": serving_examples.get_concrete_function(),
            "serving_tensor": serving_tensor.get_concrete_function(),
        }

    # --- evaluation -------------------------------------------------------------------
    def evaluator_component(self, examples, model, baseline_model):
        """The TFX component that evaluates and blesses this task's model.

        Must output ``evaluation`` (ModelEvaluation) and ``blessing`` (ModelBlessing).
        Default: TFMA's Evaluator on ``serving_examples`` (see pipeline/evaluation.py)."""
        from visionpipe.pipeline import evaluation

        return evaluation.tfma_evaluator(self, examples, model, baseline_model)

    # --- TFLite -----------------------------------------------------------------------
    def convert_tflite(self, model_or_export_dir, mode: str, representative=None) -> bytes:
        """TFLite flatbuffer in ``mode`` of the in-process Keras model or of the Keras model
        inside an exported SavedModel directory. Default: the generic Keras conversion, whose
        file computes what the model's last layer computes (e.g. softmax probabilities)."""
        model = model_or_export_dir
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            from visionpipe.models import export

            model = export.load_keras_model(str(model))
        return tflite_convert.convert(model, mode, representative)

    @abc.abstractmethod
    def evaluate_tflite(self, tflite_path: str, dataset: tf.data.Dataset) -> Dict[str, float]:
        """Metrics of a .tflite file on (image, target) pairs; includes ``gate_metric``."""
