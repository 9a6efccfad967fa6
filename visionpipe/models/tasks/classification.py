"""Image classification: single-label (softmax) and multi-label (sigmoid, per-label thresholds)."""
from __future__ import annotations

from typing import Dict

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe import features
from visionpipe.models import augment, backbones, preprocessing
from visionpipe.models.tasks.base import Task


class ClassificationTask(Task):
    name = "classification"
    feature_keys = (features.ENCODED, features.LABEL)
    gate_metric = "accuracy"
    activation = "softmax"
    single_label = True

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        if self.num_classes < 2:
            raise ValueError(f"{self.name} needs at least 2 classes, got {self.class_names}")
        self.top_k = min(config.model.top_k, self.num_classes)
        self.weights_loaded = ""

    # --- data -------------------------------------------------------------------------
    def example_to_inputs(self, parsed):
        image = preprocessing.preprocess_image(parsed[features.ENCODED], self.image_size)
        return image, self.target(parsed[features.LABEL])

    def target(self, label_ids):
        return tf.one_hot(label_ids[0], self.num_classes)

    def augment_batch(self, images, targets, seed):
        augmenter = self._augmenter()
        return augmenter(images, targets, seed) if augmenter else (images, targets)

    def _augmenter(self):
        if not hasattr(self, "_cached_augmenter"):
            with tf.init_scope():  # built eagerly even when first asked for inside a tf.data map
                self._cached_augmenter = augment.build_augmenter(self.config.augment, self.image_size)
        return self._cached_augmenter

    # --- model ------------------------------------------------------------------------
    def build_model(self) -> tf.keras.Model:
        cfg = self.config.model
        inputs = tf.keras.Input((self.image_size, self.image_size, 3), name="pixels")
        x = backbones.input_normalization(cfg.backbone)(inputs)
        backbone = backbones.build_backbone(cfg)
        if cfg.weights:
            self.weights_loaded = backbones.load_backbone_weights(backbone, cfg.weights)
        x = backbone(x)
        x = tf.keras.layers.GlobalAveragePooling2D(name="pool")(x)
        x = tf.keras.layers.Dropout(cfg.dropout, name="dropout")(x)
        x = tf.keras.layers.Dense(self.num_classes, name="logits")(x)
        outputs = tf.keras.layers.Activation(self.activation, dtype="float32", name="probabilities")(x)
        return tf.keras.Model(inputs, outputs, name=f"{self.name}_{cfg.backbone}")

    def loss(self):
        return tf.keras.losses.CategoricalCrossentropy(label_smoothing=self.config.train.label_smoothing)

    def metrics(self):
        return [tf.keras.metrics.CategoricalAccuracy(name="accuracy"),
                tf.keras.metrics.TopKCategoricalAccuracy(k=self.top_k, name="top_k_accuracy"),
                tf.keras.metrics.AUC(name="auc")]

    def compile_model(self, model, learning_rate):
        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate), loss=self.loss(),
                      metrics=self.metrics())

    # --- export -----------------------------------------------------------------------
    def _names(self):
        return tf.constant(self.class_names, dtype=tf.string)

    def serving_outputs(self, model, images) -> Dict[str, tf.Tensor]:
        probabilities = model(images, training=False)
        scores, ids = tf.math.top_k(probabilities, k=self.top_k)
        return {"probabilities": probabilities, "top_k_ids": ids,
                "top_k_names": tf.gather(self._names(), ids), "top_k_scores": scores}

    def examples_outputs(self, model, images) -> Dict[str, tf.Tensor]:
        probabilities = model(images, training=False)
        classes = tf.tile(tf.expand_dims(self._names(), 0), [tf.shape(probabilities)[0], 1])
        return {"classes": classes, "scores": probabilities}

    # --- TFLite -----------------------------------------------------------------------
    def evaluate_tflite(self, tflite_path, dataset) -> Dict[str, float]:
        """Metrics of a .tflite classifier on batched (image, target) pairs (int8 files are
        quantized/dequantized by the runtime with the parameters stored in the file)."""
        from visionpipe.serving.tflite_runtime import TFLiteModel

        model = TFLiteModel(str(tflite_path))
        probabilities, targets = [], []
        for images, batch_targets in dataset:
            probabilities.append(model.scores(np.asarray(images)))
            targets.append(np.asarray(batch_targets))
        return self.metrics_from_predictions(np.concatenate(probabilities), np.concatenate(targets))

    def metrics_from_predictions(self, probabilities, targets) -> Dict[str, float]:
        predicted = np.argmax(probabilities, axis=-1)
        truth = np.argmax(targets, axis=-1)
        top_k = np.argsort(-probabilities, axis=-1)[:, :self.top_k]
        return {"accuracy": float(np.mean(predicted == truth)),
                "top_k_accuracy": float(np.mean([t in row for t, row in zip(truth, top_k)])),
                "num_examples": int(len(truth))}


class MultiLabelTask(ClassificationTask):
    """Several labels per image: sigmoid outputs, binary cross-entropy, a threshold per label."""

    name = "multilabel"
    gate_metric = "f1"
    activation = "sigmoid"
    single_label = False

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        self.thresholds = np.full([self.num_classes], config.model.multilabel_threshold, np.float32)

    def target(self, label_ids):
        # A sum, not a max: the max of no rows is -inf, and an image without labels (a
        # negative, data.allow_unlabeled) must be all zeros. Repeated ids still give 1.
        return tf.minimum(tf.reduce_sum(tf.one_hot(label_ids, self.num_classes), axis=0), 1.0)

    def loss(self):
        return tf.keras.losses.BinaryCrossentropy(label_smoothing=self.config.train.label_smoothing)

    def metrics(self):
        threshold = self.config.model.multilabel_threshold
        return [tf.keras.metrics.BinaryAccuracy(name="binary_accuracy", threshold=threshold),
                tf.keras.metrics.AUC(name="auc", multi_label=True, num_labels=self.num_classes),
                tf.keras.metrics.Precision(name="precision", thresholds=threshold),
                tf.keras.metrics.Recall(name="recall", thresholds=threshold)]

    def evaluator_component(self, examples, model, baseline_model):
        # TFMA's metrics expect one label id per example; multi-label is gated on this task's
        # own F1 / exact match instead.
        from visionpipe.components.task_evaluator.component import TaskEvaluator

        return TaskEvaluator(examples=examples, model=model, baseline_model=baseline_model,
                             config=self.config)

    def calibrate_thresholds(self, probabilities: np.ndarray, targets: np.ndarray) -> np.ndarray:
        """Per label, the threshold that maximises F1 on held-out predictions."""
        candidates = np.linspace(0.05, 0.95, 19)
        for c in range(self.num_classes):
            f1s = [_f1(probabilities[:, c] >= t, targets[:, c] > 0.5) for t in candidates]
            if max(f1s) > 0:
                self.thresholds[c] = candidates[int(np.argmax(f1s))]
        return self.thresholds

    def serving_outputs(self, model, images):
        outputs = super().serving_outputs(model, images)
        outputs["labels"] = tf.cast(outputs["probabilities"] >= tf.constant(self.thresholds), tf.int32)
        outputs["thresholds"] = tf.tile(tf.constant(self.thresholds)[tf.newaxis],
                                        [tf.shape(images)[0], 1])
        return outputs

    def metrics_from_predictions(self, probabilities, targets):
        predicted = probabilities >= self.thresholds
        truth = targets > 0.5
        return {"f1": _f1(predicted.ravel(), truth.ravel()),
                "exact_match": float(np.mean(np.all(predicted == truth, axis=-1))),
                "binary_accuracy": float(np.mean(predicted == truth)),
                "num_examples": int(len(truth))}


def _f1(predicted, truth) -> float:
    tp = float(np.sum(predicted & truth))
    denominator = float(np.sum(predicted) + np.sum(truth))
    return 2 * tp / denominator if denominator else 0.0
