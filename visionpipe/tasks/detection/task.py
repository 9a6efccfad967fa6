"""Object detection: keras-cv RetinaNet (anchor-based), YOLOv8 (anchor-free) or SSD
(``ssd.py``: default boxes, hard-negative mining) on the project's backbones, box-aware augmentation, NMS inside every exported signature and a COCO
mAP gate computed by pycocotools.

Targets are keras-cv dense boxes in pixels of the model input (``model.image_size``,
``(height, width)``), ``yxyx``:
``{"boxes": [N, 4], "classes": [N] (-1 pads), "image_shape": [2] (original height, width)}``;
``image_shape`` lets the evaluation use COCO's small/medium/large at the image's real size.
"""
from __future__ import annotations

import json
import os
from typing import Dict

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.registry import register_task
from visionpipe.models import augment, preprocessing
from visionpipe.tasks.base import Task
from visionpipe.tasks.detection.config import DetectionConfig
from visionpipe.tracking.config import TRACKER_FILE, TrackerConfig

PAD = -1.0


@register_task
class DetectionTask(Task):
    name = "detection"
    feature_keys = (features.ENCODED, features.OBJECT_LABEL, *features.BBOX_KEYS)
    label_feature = features.OBJECT_TEXT
    #: ``tracking``: the tracker a client runs over this detector's boxes (`visionpipe track`),
    #: pushed beside the model as ``assets.extra/visionpipe_tracker.json``
    config_sections = {"detection": DetectionConfig, "tracking": TrackerConfig}
    # what the augmentation builder applies in box mode (BoxAugmenter adds detection.mosaic)
    augment_keys = augment.honoured_keys(augment.BOXES)
    default_gate_metric = "map_50"
    generated_sources = ("shapes",)
    tflite_modes = ("float32", "float16", "int8")  # visionpipe.tasks.detection.tflite.MODES
    keras_rewrites_unsupported = (
        "not available for detection: the detector's decoding and NMS live outside "
        "its Keras graph, so the model cannot be cloned, pruned, distilled or repaired layer "
        "by layer; use the float16/int8 files, which convert with NMS inside")
    onnx_unsupported = ""

    @classmethod
    def metric_names(cls, config):
        from visionpipe.tasks.detection.coco_eval import METRIC_NAMES

        return (*METRIC_NAMES, "ap/")

    @classmethod
    def validate_config(cls, config) -> None:
        from visionpipe.core.config import require

        # RetinaNet's and YOLOv8's pyramids upsample stride 32 to 16 to 8 and add the maps:
        # each side must divide by 32 (non-square is fine: anchors are laid per axis).
        height, width = config.model.hw
        require(height % 32 == 0 and width % 32 == 0, "model.image_size",
                f"a detector needs a height and width that are multiples of 32 (its feature "
                f"pyramid halves each side five times), got {config.model.image_size!r}")

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        self.detection = config.detection
        self._augmenter = None

    # --- data -------------------------------------------------------------------------
    def example_to_inputs(self, parsed: Dict[str, tf.Tensor]):
        boxes = tf.stack([tf.cast(parsed[k], tf.float32) for k in features.BBOX_KEYS], axis=-1)
        example = preprocessing.preprocess_example(parsed[features.ENCODED], self.image_size,
                                                   boxes=boxes)
        pixels, boxes, image_shape = example["images"], example["boxes"], example["image_shape"]
        classes = tf.cast(tf.reshape(parsed[features.OBJECT_LABEL], [-1]), tf.float32)
        # Ingestion quarantines zero-area boxes; a degenerate one that still arrives must not
        # be matched to anchors, so it becomes padding.
        degenerate = tf.logical_or(boxes[:, 2] <= boxes[:, 0], boxes[:, 3] <= boxes[:, 1])
        classes = tf.where(degenerate, PAD, classes)
        return pixels, {"boxes": boxes, "classes": classes, "image_shape": image_shape}

    def augment_batch(self, images, targets, seed):
        if not self.config.augment.enabled:
            return images, targets
        augmenter = self.augmenter()
        images, boxes = augmenter(images, {"boxes": targets["boxes"], "classes": targets["classes"]}, seed)
        return images, {**targets, **boxes}

    def augmenter(self):
        """The box-aware augmenter; ``augmenter().report()`` counts dropped boxes."""
        from visionpipe.tasks.detection.box_augment import BoxAugmenter

        if self._augmenter is None:
            with tf.init_scope():  # built eagerly even when first asked for inside a tf.data map
                self._augmenter = BoxAugmenter(self.config.augment, self.image_size,
                                               mosaic=self.detection.mosaic,
                                               min_box_pixels=self.detection.min_box_pixels)
        return self._augmenter

    def batch_dataset(self, dataset: tf.data.Dataset, batch_size: int,
                      drop_remainder: bool = False) -> tf.data.Dataset:
        """Pads boxes to the batch's largest count (keras-cv dense format, class -1)."""
        return dataset.padded_batch(
            batch_size,
            padded_shapes=([*self.image_size, 3],
                           {"boxes": [None, 4], "classes": [None], "image_shape": [2]}),
            padding_values=(0.0, {"boxes": PAD, "classes": PAD, "image_shape": 0}),
            drop_remainder=drop_remainder)

    # --- model ------------------------------------------------------------------------
    def build_model(self) -> tf.keras.Model:
        from visionpipe.tasks.detection import models

        model, self.weights_loaded = models.build_detector(self.config, self.num_classes)
        return model


    def compile_model(self, model: tf.keras.Model, learning_rate: float) -> None:
        from visionpipe.tasks.detection import models

        models.compile_detector(model, self.config, learning_rate)

    # --- export -----------------------------------------------------------------------
    def raw_predictions(self, model: tf.keras.Model, images: tf.Tensor):
        """Boxes ``[B, A, 4]`` (model pixels, yxyx) and class probabilities before NMS."""
        from visionpipe.tasks.detection import models

        return models.decode(model, model(images, training=False), self.image_size)

    def postprocess(self, boxes: tf.Tensor, scores: tf.Tensor) -> Dict[str, tf.Tensor]:
        """Class-aware NMS with ``config.detection``'s thresholds -> the signature outputs."""
        from visionpipe.tasks.detection import nms

        det = self.detection
        kept = nms.class_aware_nms(boxes, scores, score_threshold=det.score_threshold,
                                   iou_threshold=det.iou_threshold,
                                   max_detections=det.max_detections, pre_nms_top_k=det.pre_nms_top_k)
        return nms.serving_dict(kept, self.image_size, self.class_names)

    def export_files(self) -> Dict[str, str]:
        """The ``tracking`` section, validated, as the tracker file `visionpipe track` reads."""
        tracking = self.config.tracking.validate()
        return {os.path.join("assets.extra", TRACKER_FILE):
                json.dumps(tracking.to_dict(), indent=2, sort_keys=True) + "\n"}

    def serving_outputs(self, model: tf.keras.Model, images: tf.Tensor) -> Dict[str, tf.Tensor]:
        return self.postprocess(*self.raw_predictions(model, images))

    # --- evaluation -------------------------------------------------------------------
    def evaluate_model(self, model: tf.keras.Model, dataset: tf.data.Dataset) -> Dict[str, float]:
        """COCO metrics of an in-process model on batched (image, target) pairs."""
        from visionpipe.tasks.detection import evaluation

        serve = tf.function(lambda images: self.serving_outputs(model, images), autograph=False)
        return evaluation.evaluate_pairs(serve, self._batched(dataset).as_numpy_iterator(),
                                         self.image_size, self.class_names)

    def occlusion_report(self, model: tf.keras.Model, dataset: tf.data.Dataset,
                         fractions=(0.1, 0.25, 0.5)) -> Dict[str, float]:
        """mAP on ``dataset`` with synthetic occluders over 10/25/50% of every box."""
        from visionpipe.tasks.detection import evaluation

        serve = tf.function(lambda images: self.serving_outputs(model, images), autograph=False)
        return evaluation.occlusion_report(serve, self._batched(dataset).as_numpy_iterator(),
                                           self.image_size, self.class_names, fractions,
                                           seed=self.config.train.seed)

    def evaluate_loaded(self, loaded, eval_files):
        """COCO metrics of ``serving_default`` on the eval split, at each image's own size."""
        from visionpipe.core.examples import records
        from visionpipe.tasks.detection import evaluation

        return evaluation.evaluate_examples(loaded.signatures["serving_default"],
                                            records(eval_files), self.class_names)

    def trivial_metrics(self, eval_files, train_files):
        """The detector that finds nothing (COCO AP 0 wherever there are objects)."""
        from visionpipe.core.examples import records
        from visionpipe.tasks.detection import evaluation

        return evaluation.evaluate_examples(evaluation.no_detections, records(eval_files),
                                            self.class_names)

    def evaluation_details(self, export_dir, eval_files, output_dir=""):
        """mAP on the eval split with synthetic occluders over 10/25/50% of each box, through
        the exported ``serving_tensor`` signature (the summary's robustness numbers); with
        ``output_dir``, the run report's per-class PR curves and drawn eval images too."""
        from visionpipe.models import data
        from visionpipe.tasks.detection import evaluation

        serve = self.load_export(export_dir).signatures["serving_tensor"]

        def predict(images):
            return {k: v.numpy() for k, v in serve(pixels=tf.constant(images, tf.float32)).items()}

        batches = list(self.batch_dataset(data.pairs(eval_files, self), 16).as_numpy_iterator())
        details = {"occlusion": evaluation.occlusion_report(predict, batches, self.image_size,
                                                            self.class_names, seed=self.config.train.seed)}
        if output_dir:  # the run report's PR curves and drawn images
            from visionpipe.tasks.detection import report

            details.update(report.write_details(predict, batches, self, output_dir))
        return details

    def report_panels(self, evaluation, evaluation_dir, report_dir):
        from visionpipe.tasks.detection import report

        return report.panels_of(evaluation.get("details"), evaluation_dir, self.class_names,
                                report_dir)

    def convert_tflite(self, model_or_export_dir, mode: str, representative=None) -> bytes:
        """TFLite flatbuffer (float32 | float16 | int8) with decoding and NMS inside, from the
        in-process model or from an exported SavedModel directory."""
        from visionpipe.tasks.detection import tflite

        if isinstance(model_or_export_dir, (str, bytes)) or hasattr(model_or_export_dir, "__fspath__"):
            return tflite.convert_saved_model(str(model_or_export_dir), mode, representative)
        return tflite.convert(self, model_or_export_dir, mode, representative)

    def evaluate_tflite(self, tflite_path: str, dataset: tf.data.Dataset) -> Dict[str, float]:
        """COCO metrics of a TFLite detector (its signature has NMS inside) on (image, target)
        pairs, batched or not, from the TFLite interpreter."""
        from visionpipe.tasks.detection import evaluation

        return evaluation.evaluate_pairs(evaluation.tflite_predict_fn(tflite_path),
                                         self._batched(dataset).as_numpy_iterator(), self.image_size,
                                         self.class_names)

    def evaluate_onnx(self, onnx_path: str, dataset: tf.data.Dataset) -> Dict[str, float]:
        """COCO metrics of a model.onnx detector (NMS inside, as ONNX NonMaxSuppression) on
        (image, target) pairs, batched or not, through onnxruntime."""
        from visionpipe.runtime.onnx_runtime import OnnxModel
        from visionpipe.tasks.detection import evaluation

        return evaluation.evaluate_pairs(OnnxModel(str(onnx_path)).predict,
                                         self._batched(dataset).as_numpy_iterator(), self.image_size,
                                         self.class_names)

    def _batched(self, dataset: tf.data.Dataset, batch_size: int = 16) -> tf.data.Dataset:
        images_spec = dataset.element_spec[0]
        return self.batch_dataset(dataset, batch_size) if images_spec.shape.rank == 3 else dataset

    # --- generated data and presentation ------------------------------------------------
    @classmethod
    def write_generated(cls, source, data, out_dir):
        from visionpipe.datasets import shapes

        return shapes.write_coco_detection(out_dir, data.num_images, data.image_size, data.seed,
                                           data.class_names or None), "coco"

    @classmethod
    def present(cls, paths, images, outputs, options):
        """Boxes scoring at least ``options.min_score``; each image is written with its boxes
        drawn to ``options.output_dir/<stem>.detections.png``."""
        import io
        import json
        import os
        from pathlib import Path

        import numpy as np
        from PIL import Image

        from visionpipe.models import draw

        os.makedirs(options.output_dir, exist_ok=True)
        lines = []
        for i, (path, encoded) in enumerate(zip(paths, images)):
            rows = [r for r in draw.detections_to_rows(outputs, i) if r["score"] >= options.min_score]
            drawn = os.path.join(options.output_dir, f"{Path(path).stem}.detections.png")
            pixels = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
            Image.fromarray(draw.draw_boxes(pixels, [r["box"] for r in rows],
                                            [r["class"] for r in rows], [r["class_id"] for r in rows],
                                            [r["score"] for r in rows])).save(drawn)
            if options.as_json:
                lines.append(json.dumps({"image": path, "drawn": drawn, "detections": rows}))
                continue
            lines.append(f"{path}: {len(rows)} detections scoring >= {options.min_score} -> {drawn}")
            for row in rows:
                box = ", ".join(f"{v:.3f}" for v in row["box"])
                lines.append(f"  {row['class']:<12} {row['score']:.3f}  "
                             f"[ymin, xmin, ymax, xmax] = [{box}]")
        return lines

    def draw_targets(self, images, targets):
        """The images with their (augmented) boxes drawn."""
        import numpy as np

        from visionpipe.models import draw

        from visionpipe.models import augment, preprocessing

        drawn = []
        for image, boxes, classes in zip(super().draw_targets(images, targets),
                                         np.asarray(targets["boxes"]), np.asarray(targets["classes"])):
            keep = classes >= 0
            # model pixels -> normalised yxyx
            yxyx = preprocessing.normalize_boxes(boxes[keep], self.image_size).numpy().tolist()
            drawn.append(draw.draw_boxes(image, yxyx, [self.class_names[int(c)] for c in classes[keep]],
                                         [int(c) for c in classes[keep]], width=1))
        return np.stack(drawn)
