"""The optimization stage, task-agnostic: a trained Keras model in, gated TFLite files and a
report out. Every artifact is measured the same way, on a TFLite file with the TFLite
interpreter, against ``model_float32.tflite`` (the float model converted without
optimization), so drops and ratios compare like with like.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import tempfile
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.optimize import quantization_repair, report as report_lib
from visionpipe.runtime import tflite_convert
from visionpipe.optimize.report import Artifact, OptimizationReport
from visionpipe.runtime.tflite_runtime import TFLiteModel

log = logging.getLogger(__name__)

BASELINE = "float32"
ONNX_FILE = "model.onnx"


def _onnxruntime_version() -> str:
    import onnxruntime

    return onnxruntime.__version__


@dataclasses.dataclass
class TaskHooks:
    """What the optimizer needs from a task, as plain callables."""
    evaluate_tflite: Callable[[str], Dict[str, float]]  # .tflite path -> metrics (eval split)
    gate_metric: str  # key of evaluate_tflite's result; higher is better
    compile_model: Callable[[tf.keras.Model, float], None]  # (model, learning_rate)
    # the TFLite metadata every file gets (Task.tflite_metadata_kind: "image_classifier" or
    # "generic"; one of tflite_convert.METADATA_KINDS), declared, never guessed from the outputs
    tflite_metadata_kind: str
    build_student: Optional[Callable[[], tf.keras.Model]] = None
    # dataset of (images, targets) batches -> the same batches augmented as the Trainer does
    # (data.augment_batches); distillation applies it (optimize.distill_augment) so that
    # teacher and student see the same augmented view. None: batches are used as they come.
    augment_batches: Optional[Callable[[tf.data.Dataset], tf.data.Dataset]] = None
    # (Keras model or SavedModel dir, mode, representative) -> flatbuffer. A task whose
    # post-processing must live in the file (a detector's decoding and NMS) supplies its own;
    # the default converts the Keras model as it is.
    convert_tflite: Callable[[Any, str, Optional[tflite_convert.RepresentativeDataset]],
                             bytes] = tflite_convert.convert
    tflite_modes: Sequence[str] = tflite_convert.PTQ_MODES  # the modes convert_tflite supports
    # Keras model -> the same model with a static input shape (the int8 repair's converter);
    # a segmenter trained on crops has an open one
    static_shape_model: Callable[[tf.keras.Model], tf.keras.Model] = lambda model: model
    # Why QAT, pruning, distillation and the int8 layer repair, which rewrite the Keras model
    # and convert it generically, do not apply to this task; empty when they do.
    keras_rewrites_unsupported: str = ""
    # optimize.onnx: SavedModel dir -> ONNX bytes, and .onnx path -> metrics (eval split, the
    # same images as evaluate_tflite); onnx_unsupported says why the task has neither
    convert_onnx: Optional[Callable[[str], bytes]] = None
    evaluate_onnx: Optional[Callable[[str], Dict[str, float]]] = None
    onnx_unsupported: str = ""


@dataclasses.dataclass
class OptimizationInputs:
    # The trained float model; input float32 pixels in [0, 255]. None when only the
    # SavedModel is given: it is then what convert_tflite converts, and the steps that
    # rewrite the Keras model are skipped.
    model: Optional[tf.keras.Model]
    train_batches: tf.data.Dataset  # batched (input, target) pairs for the fine-tunes
    calibration_images: Iterable  # float32 [S, S, 3] training images (shared preprocessing)
    labels: List[str]
    saved_model_dir: Optional[str] = None  # the float SavedModel, for its size in the report

    def __post_init__(self):
        if self.model is None and not self.saved_model_dir:
            raise ValueError("OptimizationInputs: give the trained Keras model (model) or its "
                             "SavedModel (saved_model_dir)")

    @property
    def model_name(self) -> str:
        if self.model is not None:
            return self.model.name
        return os.path.basename(os.path.normpath(self.saved_model_dir))


class Optimizer:
    def __init__(self, inputs: OptimizationInputs, hooks: TaskHooks, config, output_dir: str):
        """``config`` is an OptimizeConfig."""
        self.inputs = inputs
        self.hooks = hooks
        self.config = config
        self.output_dir = output_dir
        os.makedirs(output_dir, exist_ok=True)
        self.representative = tflite_convert.representative_dataset(
            inputs.calibration_images, config.representative_samples)
        self.report = OptimizationReport(baseline=BASELINE, gate_metric=hooks.gate_metric)

    # --- measuring --------------------------------------------------------------------
    def _metrics(self, path: str, evaluate: Optional[Callable[[str], Dict[str, float]]] = None
                 ) -> Dict[str, float]:
        evaluate = evaluate or self.hooks.evaluate_tflite
        metrics = evaluate(path)
        if self.hooks.gate_metric not in metrics:
            raise KeyError(f"{getattr(evaluate, '__name__', 'evaluate')}({path}) returned "
                           f"{sorted(metrics)}, without the gate metric {self.hooks.gate_metric!r}")
        return {k: float(v) for k, v in metrics.items()}

    def _metric_of_bytes(self, tflite_model: bytes) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = tflite_convert.write(os.path.join(tmp, "candidate.tflite"), tflite_model)
            return self._metrics(path)[self.hooks.gate_metric]

    def _convert(self, model: Optional[tf.keras.Model], mode: str) -> bytes:
        """``model`` in ``mode``; None converts the trained model from its SavedModel."""
        source = self.inputs.saved_model_dir if model is None else model
        return self.hooks.convert_tflite(source, mode,
                                         self.representative if mode == "int8" else None)

    def _latency(self, path: str) -> float:
        return TFLiteModel(path, num_threads=1).median_latency_ms(runs=self.config.latency_runs)

    def _add_tflite(self, name: str, tflite_model: bytes, max_drop: Optional[float],
                    notes: Optional[Dict[str, Any]] = None) -> Artifact:
        file = f"model_{name}.tflite"
        path = os.path.join(self.output_dir, file)
        with_metadata = tflite_convert.add_metadata(
            tflite_model, self.inputs.labels, kind=self.hooks.tflite_metadata_kind, name=f"{self.inputs.model_name} ({name})",
            description=f"VisionPipe {name} TFLite model; input RGB pixels in [0, 255].")
        tflite_convert.write(path, with_metadata)
        artifact = Artifact(
            name=name, file=file, size_bytes=report_lib.size_on_disk(path),
            gzip_bytes=report_lib.gzipped_size(path), metrics=self._metrics(path),
            gate_metric=self.hooks.gate_metric, latency_ms=self._latency(path),
            max_drop=max_drop, notes=notes or {})
        return self._gate(artifact)

    def _gate(self, artifact: Artifact) -> Artifact:
        """Bless ``artifact`` when its gate metric is within ``max_drop`` of the baseline's."""
        if artifact.max_drop is None:
            artifact.blessed = True  # the reference every other file is gated against
        else:
            drop = self._baseline_metric - artifact.metric
            artifact.blessed = drop <= artifact.max_drop + 1e-9
        self.report.artifacts.append(artifact)
        log.info("%s: %s=%.4f blessed=%s", artifact.file, self.hooks.gate_metric,
                 artifact.metric, artifact.blessed)
        return artifact

    @property
    def _baseline_metric(self) -> float:
        return self.report.get(BASELINE).metric

    # --- steps ------------------------------------------------------------------------
    def _float_baseline(self) -> None:
        model = self.inputs.model
        self._add_tflite(BASELINE, self._convert(model, BASELINE), max_drop=None)
        saved_model_dir = self.inputs.saved_model_dir
        with tempfile.TemporaryDirectory() as tmp:
            if not saved_model_dir:
                saved_model_dir = os.path.join(tmp, "saved_model")
                model.save(saved_model_dir, include_optimizer=False)
            base = self.report.get(BASELINE)
            self.report.artifacts.insert(0, Artifact(
                name="float_savedmodel", file="", size_bytes=report_lib.size_on_disk(saved_model_dir),
                gzip_bytes=report_lib.gzipped_size(saved_model_dir), metrics=dict(base.metrics),
                gate_metric=base.gate_metric, latency_ms=base.latency_ms, max_drop=None,
                notes={"measured_as": base.file}))

    def _onnx(self) -> None:
        from visionpipe.runtime import onnx_convert
        from visionpipe.runtime.onnx_runtime import OnnxModel

        hooks = self.hooks
        if hooks.onnx_unsupported or hooks.convert_onnx is None or hooks.evaluate_onnx is None:
            self.report.skipped["onnx"] = hooks.onnx_unsupported or "the task gave no ONNX hooks"
            return
        if not self.inputs.saved_model_dir:
            self.report.skipped["onnx"] = ("only the Keras model was given: ONNX converts the "
                                           "exported SavedModel's serving_tensor signature")
            return
        try:
            onnx_model = hooks.convert_onnx(self.inputs.saved_model_dir)
        except Exception as err:  # noqa: BLE001 - tf2onnx raises many kinds; the report says which
            log.warning("ONNX conversion failed: %s", err)
            self.report.skipped["onnx"] = f"the ONNX conversion failed: {type(err).__name__}: {err}"
            return
        path = os.path.join(self.output_dir, ONNX_FILE)
        with open(path, "wb") as f:
            f.write(onnx_model)
        model = OnnxModel(path, num_threads=1)
        ops = onnx_convert.op_types(onnx_convert.load_model_proto(path))
        self._gate(Artifact(
            name="onnx", file=ONNX_FILE, size_bytes=report_lib.size_on_disk(path),
            gzip_bytes=report_lib.gzipped_size(path),
            metrics=self._metrics(path, hooks.evaluate_onnx), gate_metric=hooks.gate_metric,
            latency_ms=model.median_latency_ms(runs=self.config.latency_runs),
            max_drop=self.config.max_onnx_drop,
            notes={"runtime": f"onnxruntime {_onnxruntime_version()}, CPU, 1 thread",
                   "opset": onnx_convert.OPSET, "signature": onnx_convert.SIGNATURE,
                   "outputs": model.output_names,
                   "non_max_suppression_inside": "NonMaxSuppression" in ops}))

    def _int8(self) -> Artifact:
        config = self.config
        model = self.inputs.model
        int8_model = self._convert(model, "int8")
        metric = self._metric_of_bytes(int8_model)
        notes: Dict[str, Any] = {"float_layers": []}
        too_lossy = self._baseline_metric - metric > config.max_int8_drop
        if too_lossy and self._rewrites_unsupported:
            self.report.skipped["int8_repair"] = self._rewrites_unsupported
        elif too_lossy:
            result = quantization_repair.repair_int8(
                self.hooks.static_shape_model(model), self.representative, self._metric_of_bytes, self._baseline_metric,
                config.max_int8_drop, config.max_float_layers if config.repair_int8 else 0,
                int8_model=int8_model, int8_metric=metric)
            int8_model = result.model
            notes = {
                "float_layers": result.float_layers,
                "kept_in_float_because": [layer.to_dict() for layer in result.repaired_for],
                "worst_layers": [layer.to_dict() for layer in result.worst_layers],
                "repair_attempts": result.attempts,
                "repair_enabled": config.repair_int8,
            }
        return self._add_tflite("int8", int8_model, config.max_int8_drop, notes)

    def _qat(self) -> None:
        from visionpipe.optimize import qat

        config = self.config
        qat_model = qat.train_quantization_aware(
            self.inputs.model, self.inputs.train_batches,
            lambda m: self.hooks.compile_model(m, config.fine_tune_learning_rate), config.qat_epochs)
        self._add_tflite("qat_int8", self._convert(qat_model, "int8"), config.max_int8_drop)

    def _prune(self) -> None:
        from visionpipe.optimize import pruning

        config = self.config
        result = pruning.prune(
            self.inputs.model, self.inputs.train_batches,
            lambda m: self.hooks.compile_model(m, config.fine_tune_learning_rate),
            sparsity=config.prune_sparsity, structure=config.prune_structure,
            epochs=config.prune_epochs)
        notes = {"structure": config.prune_structure, "target_sparsity": config.prune_sparsity,
                 "overall_sparsity": result.overall_sparsity, "layer_sparsity": result.layer_sparsity}
        self._add_tflite("pruned", self._convert(result.model, "float32"), config.max_prune_drop,
                         notes)
        self._add_tflite("pruned_int8", self._convert(result.model, "int8"), config.max_prune_drop,
                         notes)

    def _distill(self) -> None:
        from visionpipe.optimize import distillation

        config = self.config
        if self.hooks.build_student is None:
            self.report.skipped["distill"] = "the task gave no student builder"
            return
        student = self.hooks.build_student()
        init_notes = {"student_init": config.student_init}
        if config.student_init == "teacher":
            from visionpipe.optimize.weight_selection import initialize_from_teacher

            selection = initialize_from_teacher(self.inputs.model, student)
            init_notes.update(weights_selected_from_teacher=len(selection.selected),
                              weights_kept_random=selection.kept_random)
        self.hooks.compile_model(student, config.distill_learning_rate)  # the task's loss
        augment = self.hooks.augment_batches if config.distill_augment else None
        teacher_params = distillation.count_parameters(self.inputs.model)
        student_params = distillation.count_parameters(student)
        distillation.distill(
            self.inputs.model, student, self.inputs.train_batches, hard_loss=student.loss,
            learning_rate=config.distill_learning_rate, epochs=config.distill_epochs,
            alpha=config.distill_alpha, temperature=config.distill_temperature,
            mixup_alpha=config.distill_mixup_alpha, augment_batches=augment)
        notes = {"student_backbone": config.student_backbone, "student_width": config.student_width,
                 "teacher_parameters": teacher_params, "student_parameters": student_params,
                 "parameter_ratio": student_params / teacher_params,
                 "temperature": config.distill_temperature, "alpha": config.distill_alpha,
                 "mixup_alpha": config.distill_mixup_alpha, "epochs": config.distill_epochs,
                 "augmented": augment is not None, **init_notes}
        self._add_tflite("student", self._convert(student, "float32"),
                         config.max_distill_drop, notes)

    @property
    def _rewrites_unsupported(self) -> str:
        """Why the steps that rewrite the Keras model cannot run; empty when they can."""
        if self.hooks.keras_rewrites_unsupported:
            return self.hooks.keras_rewrites_unsupported
        if self.inputs.model is None:
            return "only the SavedModel was given, not the trained Keras model"
        return ""

    def _rewrite_step(self, step: str, run_step: Callable[[], None]) -> None:
        if self._rewrites_unsupported:
            self.report.skipped[step] = self._rewrites_unsupported
        else:
            run_step()

    def run(self) -> OptimizationReport:
        config = self.config
        self._float_baseline()
        if config.onnx:
            self._onnx()
        int8 = None
        for mode in config.ptq_modes:
            if mode not in self.hooks.tflite_modes:
                self.report.skipped[mode] = (f"the task converts to TFLite only as "
                                             f"{list(self.hooks.tflite_modes)}")
            elif mode == "int8":
                int8 = self._int8()
            else:
                self._add_tflite(mode, self._convert(self.inputs.model, mode), config.max_int8_drop)
        if config.qat == "always" or (config.qat == "fallback" and int8 is not None
                                      and not int8.blessed):
            self._rewrite_step("qat", self._qat)
        if config.prune:
            self._rewrite_step("prune", self._prune)
        if config.distill:
            self._rewrite_step("distill", self._distill)
        self.report.finalize()
        self.report.write(self.output_dir)
        return self.report


def optimize(inputs: OptimizationInputs, hooks: TaskHooks, config, output_dir: str
             ) -> OptimizationReport:
    """Run every configured step; writes model_*.tflite, report.json and report.md."""
    return Optimizer(inputs, hooks, config, output_dir).run()
