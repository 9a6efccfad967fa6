"""Image classification, single label: a backbone, global pooling and a softmax head; gated on
TFMA's accuracy / top-k / macro AUC. The base of the classifier family (multi-label too)."""
from __future__ import annotations

from typing import Dict

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.registry import register_task
from visionpipe.models import augment, backbones, preprocessing
from visionpipe.tasks.base import CLASSIFY_METHOD, Task


@register_task
class ClassificationTask(Task):
    name = "classification"
    feature_keys = (features.ENCODED, features.LABEL)
    image_labels = "single"
    default_gate_metric = "accuracy"
    activation = "softmax"
    single_label = True
    signature_methods = {"serving_examples": CLASSIFY_METHOD}
    tflite_metadata_kind = "image_classifier"
    onnx_unsupported = ""
    generated_sources = ("shapes", "digits")
    augment_keys = augment.honoured_keys(augment.LABELS)  # images + MixUp/CutMix of the labels
    train_losses = ("cross_entropy", "focal")

    @classmethod
    def metric_names(cls, config):
        from visionpipe.tasks.classification import tfma_scoring

        return tfma_scoring.GATED_METRICS

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        if self.num_classes < 2:
            raise ValueError(f"{self.name} needs at least 2 classes, got {self.class_names}")
        self.top_k = min(config.model.top_k, self.num_classes)

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
        inputs, x, self.weights_loaded = backbones.pooled_backbone(
            cfg, self.image_size, cfg.pooling)
        x = tf.keras.layers.Dropout(cfg.dropout, name="dropout")(x)
        x = tf.keras.layers.Dense(self.num_classes, name="logits")(x)
        outputs = tf.keras.layers.Activation(self.activation, dtype="float32", name="probabilities")(x)
        return tf.keras.Model(inputs, outputs, name=f"{self.name}_{cfg.backbone}")

    def loss(self):
        t = self.config.train
        if t.loss == "focal":
            # alpha 1: the per-class balance is train.class_weights' job, and gamma 0 is then
            # exactly the cross-entropy
            return tf.keras.losses.CategoricalFocalCrossentropy(
                alpha=1.0, gamma=t.focal_gamma, label_smoothing=t.label_smoothing)
        return tf.keras.losses.CategoricalCrossentropy(label_smoothing=t.label_smoothing)

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
        from visionpipe.runtime.tflite_runtime import TFLiteModel

        model = TFLiteModel(str(tflite_path))
        probabilities, targets = [], []
        for images, batch_targets in dataset:
            probabilities.append(model.scores(np.asarray(images)))
            targets.append(np.asarray(batch_targets))
        return self.metrics_from_predictions(np.concatenate(probabilities), np.concatenate(targets))

    def evaluate_onnx(self, onnx_path, dataset) -> Dict[str, float]:
        """Metrics of a model.onnx classifier (its ``probabilities`` output) on batched
        (image, target) pairs, through onnxruntime."""
        from visionpipe.runtime.onnx_runtime import OnnxModel

        model = OnnxModel(str(onnx_path))
        probabilities, targets = [], []
        for images, batch_targets in dataset:
            probabilities.append(model.predict(np.asarray(images))["probabilities"])
            targets.append(np.asarray(batch_targets))
        return self.metrics_from_predictions(np.concatenate(probabilities), np.concatenate(targets))

    def metrics_from_predictions(self, probabilities, targets) -> Dict[str, float]:
        predicted = np.argmax(probabilities, axis=-1)
        truth = np.argmax(targets, axis=-1)
        top_k = np.argsort(-probabilities, axis=-1, kind="stable")[:, :self.top_k]
        from visionpipe.tasks.classification import confusion

        matrix = confusion.confusion_matrix(truth, predicted, self.num_classes)
        return {"accuracy": float(np.mean(predicted == truth)),
                "top_k_accuracy": float(np.mean([t in row for t, row in zip(truth, top_k)])),
                "macro_auc": macro_auc(probabilities, targets),
                **confusion.confusion_metrics(matrix, self.class_names),
                "num_examples": int(len(truth))}

    # --- robustness -------------------------------------------------------------------
    robustness_unsupported = ""

    def robustness_loss(self, targets, outputs):
        return self.loss()(targets, outputs)

    def robustness_score(self, outputs, targets) -> float:
        metrics = self.metrics_from_predictions(np.asarray(outputs), np.asarray(targets))
        return float(metrics.get(self.gate_metric, metrics["accuracy"]))

    # --- evaluation ---------------------------------------------------------------------
    def evaluate_exports(self, export_dirs, eval_files, work_dir, beam_pipeline_args=()):
        from visionpipe.tasks.classification import tfma_scoring

        return tfma_scoring.evaluate_exports(self, export_dirs, eval_files, work_dir,
                                             beam_pipeline_args)

    def evaluation_details(self, export_dir, eval_files, output_dir=""):
        """With ``output_dir``: the eval split's probabilities for the run report's panels."""
        from visionpipe.tasks.classification import report

        if not output_dir:
            return {}
        return report.write_predictions(self.load_export(export_dir).signatures["serving_default"],
                                        eval_files, self.target_of, self.feature_keys, output_dir)

    def report_panels(self, evaluation, evaluation_dir, report_dir):
        from visionpipe.tasks.classification import report

        return report.panels_of(evaluation.get("details"), evaluation_dir, self.class_names,
                                report_dir)

    def target_of(self, parsed):
        labels = np.asarray(parsed[features.LABEL]).reshape(-1)
        target = np.zeros(self.num_classes, np.float32)
        target[labels[:1]] = 1.0
        return target

    def score(self, predictions, targets):
        return self.metrics_from_predictions(predictions["probabilities"], np.stack(targets))

    def trivial_metrics(self, eval_files, train_files):
        """The best answer that ignores the image: the same class ranking for every image,
        the eval split's most frequent classes first (ties broken by the training split's
        frequencies), so its accuracy is the eval majority class's share and its top-k the
        k most frequent classes' share (as multi-label's floor is its best fixed label set).

        Not the training majority class alone: on balanced data the class the split left
        most of in train is the one it left fewest of in eval, and a model that answers one
        other class for every image (an untrained one) would beat that floor by chance."""
        prior = np.stack(self.targets(train_files)).mean(axis=0)
        truth = np.stack(self.targets(eval_files))
        eval_share = truth.mean(axis=0)
        ranked = np.lexsort((-prior, -eval_share))  # best first
        scores = np.empty(self.num_classes, np.float32)
        scores[ranked] = np.linspace(1.0, 0.0, self.num_classes, endpoint=False)
        scores /= scores.sum()
        return self.score({"probabilities": np.tile(scores, (len(truth), 1))}, list(truth))

    # --- generated data and presentation ------------------------------------------------
    @classmethod
    def write_generated(cls, source, data, out_dir):
        classes = data.class_names or None
        if source == "digits":
            from visionpipe.datasets.digits import write_digits_folder

            write_digits_folder(out_dir, data.num_images, data.image_size, data.seed, classes)
            return str(out_dir), "folder"
        from visionpipe.datasets import shapes

        shapes.write_classification_folder(out_dir, data.num_images, data.image_size, data.seed,
                                           classes)
        return str(out_dir), "folder"

    @classmethod
    def present(cls, paths, images, outputs, options):
        if options.as_json:
            return super().present(paths, images, outputs, options)
        lines = []
        for path, names, scores in zip(paths, outputs["top_k_names"], outputs["top_k_scores"]):
            shown = ", ".join(f"{n.decode() if isinstance(n, bytes) else n} {s:.3f}"
                              for n, s in zip(names, scores))
            lines.append(f"{path}: {shown}")
        return lines


def macro_auc(scores: np.ndarray, targets: np.ndarray) -> float:
    """Mean one-vs-rest ROC AUC over the classes that have both positives and negatives."""
    from sklearn.metrics import roc_auc_score

    truth = np.asarray(targets) > 0.5
    aucs = [roc_auc_score(truth[:, c], scores[:, c]) for c in range(truth.shape[1])
            if 0 < truth[:, c].sum() < len(truth)]
    return float(np.mean(aucs)) if aucs else float("nan")
