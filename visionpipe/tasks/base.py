"""The one contract every task implements (see CONTRIBUTING.md, "Adding a task").

A task turns parsed Examples into (model input, target) with the shared preprocessing,
augments what is valid for its targets, builds and compiles the model, exports the serving
signatures (post-processing such as softmax or NMS lives inside them), evaluates a TFLite
file of itself for the int8 gate, and presents its predictions to the CLI.

What used to be implicit is declared here as class attributes, read by the hosts (trainer,
evaluator, exporter, optimizer, schema, config, CLI) without knowing which task it is.
"""
from __future__ import annotations

import abc
from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.config import image_hw
from visionpipe.models import backbones, export, preprocessing
from visionpipe.runtime import tflite_convert

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = export.CLASSIFY_METHOD


class Task(abc.ABC):
    # --- declarations (class attributes) ---------------------------------------------------
    name: str = ""
    #: keys of ``core.features`` this task reads from an Example (the schema requires them)
    feature_keys: Sequence[str] = (features.ENCODED,)
    #: the feature holding each example's class names (the label drift check, the schema's
    #: class names); image-level for classifiers, per object for detectors
    label_feature: str = features.LABEL_TEXT
    #: image-level labels the Examples must carry: "single" (exactly one), "multi" (any
    #: number), "" (none; e.g. detection's labels are per object)
    image_labels: str = ""
    #: every image must carry a semantic mask (``image/segmentation/mask``); ingestion
    #: quarantines one without as ``bad_mask``
    needs_semantic_mask: bool = False
    #: config sections this task adds to the config ({section name: dataclass with validate()})
    config_sections: Mapping[str, type] = {}
    #: ``augment.*`` keys this task's augmenter honours; a non-default value of any other
    #: ``augment.*`` key is a config error (None: every key)
    augment_keys: Optional[Sequence[str]] = None
    #: ``train.loss`` values this task's head honours (a non-default one it does not is a
    #: config error)
    train_losses: Sequence[str] = ()
    #: gate defaults used when the config leaves ``evaluate.*`` at the global defaults
    default_gate_metric: str = ""
    #: one class id per example (class weights and oversampling apply)
    single_label: bool = False
    #: the layer transfer learning freezes, fine-tunes and copies from an earlier model
    transfer_layer: str = backbones.BACKBONE_LAYER_NAME
    #: {signature name: method name} written into the SavedModel (TF Serving's Classify and
    #: Regress APIs accept only signatures marked with their method)
    signature_methods: Mapping[str, str] = {}
    #: TFLite metadata written for phones: "image_classifier" (labels + one score per class,
    #: what the Task Library's ImageClassifier reads), "image_segmenter" (labels + a score
    #: per pixel and class, the ImageSegmenter's) or "generic" (named outputs)
    tflite_metadata_kind: str = "generic"
    #: the TFLite modes ``convert_tflite`` supports
    tflite_modes: Sequence[str] = tflite_convert.PTQ_MODES
    #: why the optimizer's Keras rewrites (QAT, pruning, distillation, int8 layer repair)
    #: do not apply to this task's model; empty when they do
    keras_rewrites_unsupported: str = ""
    #: why ``optimize.onnx`` does not apply to this task (it implements no ``evaluate_onnx``);
    #: empty when it does
    onnx_unsupported: str = "the task does not score ONNX files (no Task.evaluate_onnx)"
    #: why ``evaluate.robustness`` (corruptions, FGSM/PGD, Grad-CAM in the report) does not
    #: apply to this task; empty when it implements ``robustness_loss`` and
    #: ``robustness_score`` on its Keras model's outputs
    robustness_unsupported: str = ("the task declares no robustness loss and score "
                                   "(Task.robustness_loss / Task.robustness_score)")
    #: ``data.source`` values of generated data this task can write (see ``write_generated``)
    generated_sources: Sequence[str] = ()
    #: True when ``finalize`` needs held-out predictions after training (e.g. thresholds)
    finalizes: bool = False
    #: what ``finalize`` is handed: "held_out" (the calibration split, else eval) or "train"
    #: (the training split, e.g. a retrieval gallery of the training images)
    finalize_split: str = "held_out"
    #: names of extra pipeline stages (``components.stages.register_stage``) to run after the
    #: Evaluator; a stage may hand the Pusher files to ship with the model (a retrieval index)
    pipeline_stages: Sequence[str] = ()

    def __init__(self, config, class_names: List[str]):
        self.config = config
        self.class_names = list(class_names)
        #: the model input's ``(height, width)`` (``model.image_size``: an int is a square)
        self.image_size: Tuple[int, int] = image_hw(config.model.image_size, "model.image_size")
        #: what ``build_model`` loaded as pretrained weights ("" when none)
        self.weights_loaded = ""
        #: examples per class id of the whole training split, for tasks whose images have one
        #: label (``image_labels == "single"``): set by the trainer (``models.training.train``,
        #: which reads every label) before it builds the training data; None when not known
        self.train_class_counts: Optional[np.ndarray] = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def gate_metric(self) -> str:
        """The metric the evaluation gate and the int8 gate compare (higher is better)."""
        return self.config.evaluate.gate_metric

    # --- config ---------------------------------------------------------------------------
    @classmethod
    def metric_names(cls, config) -> Sequence[str]:
        """Names of the metrics ``score`` computes (gate metrics and thresholds must be among
        them); entries ending in ``/`` are prefixes (e.g. ``ap/`` for ``ap/<class>``)."""
        return ()

    @classmethod
    def validate_config(cls, config) -> None:
        """Cross-section checks of a config whose ``task`` is this task (raise ConfigError)."""

    @classmethod
    def mask_ignore_value(cls, config) -> int:
        """The semantic-mask value of pixels neither trained on nor scored; ingestion writes a
        source's own "not labelled" value (VOC's 255) as this."""
        return 255

    # --- data -----------------------------------------------------------------------------
    @abc.abstractmethod
    def example_to_inputs(self, parsed: Dict[str, tf.Tensor]):
        """One parsed Example (``core.features.parse_single``) -> (image, target).

        image: float32 [H, W, 3] in [0, 255] from ``preprocessing.preprocess_image``."""

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

    @classmethod
    def write_generated(cls, source: str, data_config, out_dir) -> Tuple[str, str]:
        """Write generated data of ``source`` (one of ``generated_sources``) for this task
        under ``out_dir``; returns (``data.path`` to ingest, the ingestion source)."""
        raise NotImplementedError(f"task {cls.name!r} has no generated data")

    # --- model ----------------------------------------------------------------------------
    @abc.abstractmethod
    def build_model(self) -> tf.keras.Model:
        """Backbone + head; input float32 [None, h, w, 3] in [0, 255], ``(h, w) = image_size``."""

    @abc.abstractmethod
    def compile_model(self, model: tf.keras.Model, learning_rate: float) -> None:
        """Compile with the task's loss and metrics."""

    def backbone_of(self, model: tf.keras.Model) -> tf.keras.Model:
        """The layer ``transfer_layer`` of ``model``."""
        return model.get_layer(self.transfer_layer)

    def finalize(self, model: tf.keras.Model, held_out: tf.data.Dataset) -> None:
        """After training, before export: fit what needs held-out predictions (``finalizes``);
        ``held_out`` is the split ``finalize_split`` names, batched (image, target) pairs."""

    # --- export ---------------------------------------------------------------------------
    def export_files(self) -> Dict[str, str]:
        """{path inside the export: text} written beside the SavedModel at export (e.g. an
        ``assets.extra/`` file clients read), so the Pusher ships them with the model.
        Default: none."""
        return {}

    @abc.abstractmethod
    def serving_outputs(self, model: tf.keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Model input batch -> the dict every signature returns (post-processing inside)."""

    def examples_outputs(self, model: tf.keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Outputs of ``serving_examples``. Default: as serving."""
        return self.serving_outputs(model, images)

    def signatures(self, model: tf.keras.Model) -> Dict[str, tf.types.experimental.ConcreteFunction]:
        """serving_default (encoded bytes), serving_examples (tf.Example), serving_tensor (float)."""
        size = self.image_size
        height, width = size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serving_default(images):
            return self.serving_outputs(model, preprocessing.preprocess_batch(images, size))

        # The input is named ``inputs``, as TF Serving's Classify and Regress APIs require.
        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serving_examples(inputs):
            parsed = features.parse_examples(inputs, keys=[features.ENCODED])
            return self.examples_outputs(
                model, preprocessing.preprocess_batch(parsed[features.ENCODED], size))

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")])
        def serving_tensor(pixels):
            return self.serving_outputs(model, pixels)

        return {
            "serving_default": serving_default.get_concrete_function(),
            "serving_examples": serving_examples.get_concrete_function(),
            "serving_tensor": serving_tensor.get_concrete_function(),
        }

    # --- evaluation (what the one Evaluator component asks) --------------------------------
    def evaluate_exports(self, export_dirs: Mapping[str, str], eval_files: Sequence[str],
                         work_dir: str, beam_pipeline_args: Sequence[str] = ()
                         ) -> Dict[str, Dict[str, float]]:
        """Metrics of each exported SavedModel (``{role: export dir}``, roles ``candidate`` and
        ``baseline``) on the eval split; each export is loaded once. ``work_dir`` is the
        evaluation artifact's folder (a scorer may keep its own files there). A scorer that
        runs Beam runs it with ``beam_pipeline_args`` (the pipeline's runner and options)."""
        return {role: self.evaluate_loaded(self.load_export(path), eval_files)
                for role, path in export_dirs.items()}

    def load_export(self, export_dir: str):
        """``tf.saved_model.load(export_dir)``, once per task object and directory."""
        cache = self.__dict__.setdefault("_loaded_exports", {})
        if export_dir not in cache:
            cache[export_dir] = tf.saved_model.load(export_dir)
        return cache[export_dir]

    def targets(self, files: Sequence[str]) -> List:
        """``target_of`` every Example in ``files``."""
        from visionpipe.core.examples import records

        return [self.target_of({k: v.numpy() for k, v in
                                features.parse_single(record, list(self.feature_keys)).items()})
                for record in records(files)]

    def evaluate_loaded(self, loaded, eval_files: Sequence[str]) -> Dict[str, float]:
        """Metrics of one loaded export: ``serving_default`` on the eval split's encoded
        images, scored by ``score``."""
        predictions, targets = predict_examples(loaded.signatures["serving_default"], eval_files,
                                                self.feature_keys, self.target_of)
        return self.score(predictions, targets)

    def target_of(self, parsed: Mapping[str, np.ndarray]):
        """The scoring target of one Example parsed with ``feature_keys`` (numpy values)."""
        raise NotImplementedError(f"task {self.name!r} scores its exports itself")

    def score(self, predictions: Dict[str, np.ndarray], targets: List) -> Dict[str, float]:
        """Metrics of ``serving_default`` outputs (concatenated over the eval split) against
        the ``target_of`` each example."""
        raise NotImplementedError(f"task {self.name!r} scores its exports itself")

    @abc.abstractmethod
    def trivial_metrics(self, eval_files: Sequence[str], train_files: Sequence[str]) -> Dict[str, float]:
        """The metrics of this task's trivial predictor, the best one that ignores the image
        (one class ranking for every image, a fixed label set, no boxes, ...), on the eval
        split: the floor the gate asks a model to beat. An untrained model must not beat it
        (tests/conformance checks that for every task)."""

    def evaluation_details(self, export_dir: str, eval_files: Sequence[str],
                           output_dir: str = "") -> Dict[str, Any]:
        """Extra, ungated results for the evaluation report (e.g. robustness). ``output_dir``
        (the evaluation artifact's folder, "" for none) is where a task may write files for
        the report (e.g. drawn images), named in what it returns relative to that folder."""
        return {}

    def report_panels(self, evaluation: Mapping[str, Any], evaluation_dir: str,
                      report_dir: str) -> List[Any]:
        """The task's panels (``visionpipe.report.Panel``) in the run report's evaluation
        section: ``evaluation`` is the Evaluator's report (``details`` is what
        ``evaluation_details`` returned, its files relative to ``evaluation_dir``); PNGs are
        written into ``report_dir`` and named relative to it. Default: none."""
        return []

    # --- robustness and explanations (evaluate.robustness, ``visionpipe explain``) ---------
    def robustness_model(self, export_dir: str) -> tf.keras.Model:
        """The Keras model inside an export that the attacks and explanations differentiate;
        a task whose serving post-processing depends on values fitted after training (e.g.
        thresholds) restores them here. Default: ``export.load_keras_model``."""
        return export.load_keras_model(export_dir)

    def robustness_loss(self, targets: tf.Tensor, outputs: tf.Tensor) -> tf.Tensor:
        """The loss the white-box attacks increase: the Keras model's ``outputs`` against the
        ``example_to_inputs`` targets (differentiable)."""
        raise NotImplementedError(f"task {self.name!r}: {self.robustness_unsupported}")

    def robustness_score(self, outputs: np.ndarray, targets: np.ndarray) -> float:
        """The gate metric of the Keras model's outputs against the targets (numpy)."""
        raise NotImplementedError(f"task {self.name!r}: {self.robustness_unsupported}")

    def explained_class(self, outputs: np.ndarray) -> np.ndarray:
        """The class id per image an explanation shows (the Keras model's outputs ->
        ``[B]``); the explained quantity is ``outputs[i, id]``. Default: the arg-max."""
        return np.argmax(np.asarray(outputs).reshape(len(outputs), -1), axis=-1)

    # --- TFLite ---------------------------------------------------------------------------
    def static_shape_model(self, model: tf.keras.Model) -> tf.keras.Model:
        """The Keras model as TFLite converts it (static input shape); default: itself."""
        return model

    def convert_tflite(self, model_or_export_dir, mode: str, representative=None) -> bytes:
        """TFLite flatbuffer in ``mode`` of the in-process Keras model or of the Keras model
        inside an exported SavedModel directory. Default: the generic Keras conversion, whose
        file computes what the model's last layer computes (e.g. softmax probabilities)."""
        model = model_or_export_dir
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = export.load_keras_model(str(model))
        return tflite_convert.convert(model, mode, representative)

    @abc.abstractmethod
    def evaluate_tflite(self, tflite_path: str, dataset: tf.data.Dataset) -> Dict[str, float]:
        """Metrics of a .tflite file on (image, target) pairs; includes the gate metric."""

    # --- ONNX -----------------------------------------------------------------------------
    def convert_onnx(self, export_dir: str) -> bytes:
        """The ONNX model of the export's ``serving_tensor`` signature (pixels in, the
        signature's outputs, post-processing included, out)."""
        from visionpipe.runtime import onnx_convert

        return onnx_convert.convert_saved_model(str(export_dir))

    def evaluate_onnx(self, onnx_path: str, dataset: tf.data.Dataset) -> Dict[str, float]:
        """Metrics of a model.onnx on batched (image, target) pairs through onnxruntime;
        includes the gate metric. A task that implements it sets ``onnx_unsupported = ""``."""
        raise NotImplementedError(f"task {self.name!r}: {self.onnx_unsupported}")

    # --- presentation ---------------------------------------------------------------------
    @classmethod
    def present(cls, paths: Sequence[str], images: Sequence[bytes], outputs: Dict[str, np.ndarray],
                options) -> List[str]:
        """Lines ``visionpipe predict`` prints for ``serving_default`` outputs (``options``:
        ``as_json``, ``output_dir``, ``min_score``, ``class_names``: the export's
        ``assets/labels.txt`` by id, [] without one); may write drawn images."""
        import json

        lines = []
        for i, path in enumerate(paths):
            row = {key: _jsonable(value[i]) for key, value in outputs.items()}
            lines.append(json.dumps({"image": path, **row}) if options.as_json
                         else f"{path}: {json.dumps(row)[:400]}")
        return lines

    def draw_targets(self, images, targets) -> np.ndarray:
        """uint8 images with their targets drawn (``augment-preview``). Default: the images."""
        return np.clip(np.asarray(images), 0, 255).astype("uint8")


def _jsonable(value):
    if isinstance(value, bytes):
        return value.decode()
    if hasattr(value, "tolist"):
        return _jsonable(value.tolist())
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    return value


def predict_examples(serving_fn, files: Sequence[str], keys: Sequence[str], target_of,
                     batch_size: int = 64):
    """Run ``serving_fn(images=<encoded [B]>)`` over the Examples in ``files``; returns the
    outputs concatenated over examples (numpy) and ``target_of(parsed)`` of each example.
    Examples are parsed one by one: list features vary in length per example."""
    from visionpipe.core.examples import records

    outputs: Dict[str, List[np.ndarray]] = {}
    targets = []
    for batch in records(files).batch(batch_size):
        encoded = features.parse_examples(batch, [features.ENCODED])[features.ENCODED]
        for key, value in serving_fn(images=encoded).items():
            outputs.setdefault(key, []).append(value.numpy())
        for record in batch:
            parsed = features.parse_single(record, list(keys))
            targets.append(target_of({k: v.numpy() for k, v in parsed.items()}))
    return {k: np.concatenate(v) for k, v in outputs.items()}, targets
