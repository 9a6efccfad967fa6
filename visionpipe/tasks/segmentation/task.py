"""Semantic segmentation: a class id for every pixel.

Targets are the Examples' ``image/segmentation/mask`` (a PNG of class ids at the image's
size), resized nearest-neighbour with the image to ``model.image_size``: int32 ``[h, w, 1]``.
A pixel of ``segmentation.ignore_index`` (default 255) is neither trained on nor scored.

Class names are the Examples' class list (``class_names.json``), in mask-id order: id ``k``
is class ``k``. Ingestion fixes that list from ``data.class_names`` when set, else from
``data.mask_values`` (its names by ascending pixel value), else from the sources' labels
(sorted; generated ``shapes`` data writes its masks in that sorted order, ``background``
included, see ``write_generated``).

Serving (every signature): ``class_map`` (int32 ``[B, H, W]``, the arg-max; in
``serving_default`` and ``serving_examples`` at each input image's own size, nearest-
neighbour, a batch of differently sized images padded with -1 to the largest),
``class_map_png_bytes`` (the same map, one 8-bit PNG per image: the compact REST answer;
the ``_bytes`` suffix makes TF Serving's REST API send it as ``{"b64": ...}``),
``image_shape`` (``[B, 2]``, the size each map covers) and, with
``segmentation.serve_probabilities`` (off by default), ``probabilities`` ``[B, h, w, C]`` at
model size. With ``segmentation.test_time_flips`` every signature averages the network's
probabilities over flipped copies of its input before the arg-max.
"""
from __future__ import annotations

from typing import Dict, List

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.core.registry import register_task
from visionpipe.models import augment, preprocessing
from visionpipe.runtime import tflite_convert
from visionpipe.tasks.base import Task
from visionpipe.tasks.segmentation.config import TEST_TIME_FLIPS, SegmentationConfig

BACKGROUND = "background"
PAD_ID = -1
OVERLAYS = 4  # eval images drawn by evaluation_details (with an output folder)
OVERLAY_FOLDER = "overlays"
BOUNDARY_TOLERANCE = 2  # pixels (at the image's own size) for evaluation_details' boundary F1


@register_task
class SegmentationTask(Task):
    name = "segmentation"
    feature_keys = (features.ENCODED, features.SEGMENTATION_MASK)
    # the classes an image shows (ingestion lists the ids present in its mask)
    label_feature = features.LABEL_TEXT
    image_labels = ""
    needs_semantic_mask = True
    config_sections = {"segmentation": SegmentationConfig}
    augment_keys = augment.honoured_keys(augment.MASKS)
    default_gate_metric = "miou"
    tflite_metadata_kind = tflite_convert.IMAGE_SEGMENTER
    generated_sources = ("shapes",)

    @classmethod
    def metric_names(cls, config):
        return ("miou", "pixel_accuracy", "dice", "iou/")

    @classmethod
    def validate_config(cls, config) -> None:
        from visionpipe.core.config import require

        seg = config.segmentation
        factor = seg.downsampling
        height, width = config.model.hw
        require(height % factor == 0 and width % factor == 0, "model.image_size",
                f"segmentation.architecture={seg.architecture} halves each side "
                f"{factor.bit_length() - 1} times: height and width must be multiples of "
                f"{factor}, got {config.model.image_size!r}")
        require(seg.train_crop <= min(height, width), "segmentation.train_crop",
                f"{seg.train_crop} is larger than model.image_size {config.model.image_size!r}")
        require(not seg.elastic_displacement or config.augment.enabled,
                "segmentation.elastic_displacement",
                f"{seg.elastic_displacement:g} px is a training augmentation: it needs "
                f"augment.enabled=true (or set it to 0)")

    @classmethod
    def mask_ignore_value(cls, config) -> int:
        return config.segmentation.ignore_index

    def __init__(self, config, class_names):
        super().__init__(config, class_names)
        self.seg = config.segmentation
        if self.num_classes < 2:
            raise ValueError(f"segmentation needs at least 2 classes (e.g. background and one "
                             f"more), got {self.class_names}")
        if self.num_classes > 255:
            raise ValueError(f"segmentation masks are 8-bit: at most 255 classes, got {self.num_classes}")
        if self.seg.ignore_index < self.num_classes:
            raise ValueError(f"segmentation.ignore_index={self.seg.ignore_index} is class id "
                             f"{self.seg.ignore_index} ({self.class_names[self.seg.ignore_index]!r}); "
                             f"choose a value >= {self.num_classes}")
        if self.seg.class_weights and len(self.seg.class_weights) != self.num_classes:
            raise ValueError(f"segmentation.class_weights: {len(self.seg.class_weights)} weights "
                             f"for {self.num_classes} classes {self.class_names}")

    # --- data -------------------------------------------------------------------------
    def example_to_inputs(self, parsed: Dict[str, tf.Tensor]):
        example = preprocessing.preprocess_example(parsed[features.ENCODED], self.image_size,
                                                   mask=parsed[features.SEGMENTATION_MASK])
        return example["images"], example["segmentation_masks"]

    def augment_batch(self, images, targets, seed):
        # In mask mode every geometric op reflects at the border or crops inside the image
        # (augment.OPS), so no op pads: no pixel needs the ignore index as a fill.
        # Elastic deformation comes after the crop: it costs per pixel, and it reflects at
        # the window's border as the other ops do at the image's.
        augmenter = self._augmenter()
        images, targets = augmenter(images, targets, seed) if augmenter else (images, targets)
        if self.seg.train_crop:
            images, targets = random_crops(images, targets, self.seg.train_crop, seed)
        if self.seg.elastic_displacement and self.config.augment.enabled:
            from visionpipe.tasks.segmentation.elastic import elastic_deform

            images, targets = elastic_deform(images, targets, self.seg.elastic_displacement,
                                             self.seg.elastic_grid, seed)
        return images, targets

    def _augmenter(self):
        if not hasattr(self, "_cached_augmenter"):
            with tf.init_scope():
                self._cached_augmenter = augment.build_augmenter(self.config.augment, self.image_size,
                                                                 augment.MASKS)
        return self._cached_augmenter

    # --- model ------------------------------------------------------------------------
    def build_model(self) -> tf.keras.Model:
        from visionpipe.tasks.segmentation import models

        model, self.weights_loaded = models.build(self.config, self.num_classes)
        return model

    def compile_model(self, model, learning_rate) -> None:
        from visionpipe.tasks.segmentation import losses

        model.compile(optimizer=tf.keras.optimizers.Adam(learning_rate),
                      loss=losses.make_loss(self.seg, self.num_classes),
                      metrics=[tf.keras.metrics.MeanIoU(self.num_classes, name="miou",
                                                        ignore_class=self.seg.ignore_index,
                                                        sparse_y_pred=False)])

    # --- export -----------------------------------------------------------------------
    def probabilities(self, model, images) -> tf.Tensor:
        """The network's ``[B, h, w, C]`` probabilities, averaged over the flips of
        ``segmentation.test_time_flips`` (each flipped copy's output flipped back)."""
        flips = TEST_TIME_FLIPS[self.seg.test_time_flips]
        total = None
        for axes in flips:
            out = model(tf.reverse(images, axes) if axes else images, training=False)
            out = tf.reverse(out, axes) if axes else out
            total = out if total is None else total + out
        return total if len(flips) == 1 else total / float(len(flips))

    def serving_outputs(self, model, images) -> Dict[str, tf.Tensor]:
        probabilities = self.probabilities(model, images)
        class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        batch = tf.shape(images)[0]
        shape = tf.tile(tf.constant([self.image_size], tf.int32), [batch, 1])
        return self._outputs(probabilities, class_map, shape)

    def _outputs(self, probabilities, class_map, image_shape) -> Dict[str, tf.Tensor]:
        out = {"class_map": class_map, "class_map_png_bytes": _encode_pngs(class_map, image_shape),
               "image_shape": image_shape}
        if self.seg.serve_probabilities:
            out["probabilities"] = probabilities
        return out

    def outputs_at_own_size(self, model, encoded) -> Dict[str, tf.Tensor]:
        """Encoded images of any sizes -> the outputs with each class map at its image's size."""
        height, width = self.image_size

        def one(data):
            image = preprocessing.decode_image(data)
            return preprocessing.resize_image(image, (height, width)), tf.shape(image)[:2]

        pixels, image_shape = tf.map_fn(one, encoded, fn_output_signature=(
            tf.TensorSpec([height, width, 3], tf.float32), tf.TensorSpec([2], tf.int32)))
        probabilities = self.probabilities(model, pixels)
        class_map = tf.argmax(probabilities, axis=-1, output_type=tf.int32)
        largest = tf.reduce_max(image_shape, axis=0)

        def restore(args):
            ids, size = args
            # nearest-neighbour, as preprocessing.resize_mask: never a blend of two ids
            resized = tf.image.resize(ids[..., None], size, method="nearest")[..., 0]
            pad = [[0, largest[0] - size[0]], [0, largest[1] - size[1]]]
            return tf.pad(tf.cast(resized, tf.int32), pad, constant_values=PAD_ID)

        restored = tf.map_fn(restore, (class_map, image_shape),
                             fn_output_signature=tf.TensorSpec([None, None], tf.int32))
        return self._outputs(probabilities, restored, image_shape)

    def signatures(self, model):
        height, width = self.image_size

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="images")])
        def serving_default(images):
            return self.outputs_at_own_size(model, images)

        @tf.function(input_signature=[tf.TensorSpec([None], tf.string, name="inputs")])
        def serving_examples(inputs):
            parsed = features.parse_examples(inputs, keys=[features.ENCODED])
            return self.outputs_at_own_size(model, parsed[features.ENCODED])

        @tf.function(input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")])
        def serving_tensor(pixels):
            return self.serving_outputs(model, pixels)

        return {"serving_default": serving_default.get_concrete_function(),
                "serving_examples": serving_examples.get_concrete_function(),
                "serving_tensor": serving_tensor.get_concrete_function()}

    # --- evaluation -------------------------------------------------------------------
    def _accumulator(self):
        from visionpipe.tasks.segmentation.evaluation import ConfusionAccumulator

        return ConfusionAccumulator(self.num_classes, self.seg.ignore_index)

    def target_of(self, parsed):
        """The mask of class ids at the image's own size, uint8 ``[H, W]``."""
        return decode_mask_png(parsed[features.SEGMENTATION_MASK])

    def _predicted(self, loaded, eval_files, batch_size: int = 16):
        """(encoded image, truth ids, predicted ids) of each eval Example, both maps at the
        image's own size, from ``serving_default``."""
        from visionpipe.core.examples import records

        serve = loaded.signatures["serving_default"]
        for batch in records(eval_files).batch(batch_size):
            parsed = features.parse_examples(batch, list(self.feature_keys))
            out = serve(images=parsed[features.ENCODED])
            maps, shapes = out["class_map"].numpy(), out["image_shape"].numpy()
            for encoded, ids, (h, w), mask in zip(parsed[features.ENCODED].numpy(), maps, shapes,
                                                  parsed[features.SEGMENTATION_MASK].numpy()):
                yield encoded, decode_mask_png(mask), ids[:h, :w]

    def evaluate_loaded(self, loaded, eval_files, batch_size: int = 16) -> Dict[str, float]:
        """mIoU etc. of ``serving_default`` on the eval split, at each image's own size."""
        acc = self._accumulator()
        for _, truth, predicted in self._predicted(loaded, eval_files, batch_size):
            acc.add(truth, predicted)
        return acc.metrics(self.class_names)

    def evaluation_details(self, export_dir, eval_files, output_dir: str = "",
                           num_overlays: int = OVERLAYS) -> Dict[str, object]:
        """Ungated, for the evaluation report, from one pass of ``serving_default`` over the
        eval split at each image's own size:

        - ``per_class``: by class name, IoU, Dice, precision, recall and pixel counts over
          all eval pixels, plus ``images`` (eval images whose truth shows the class) and
          ``image_miou`` (the mean over those images of the class's per-image IoU);
        - ``by_image_size``: per slice of the images' own ``(h, w)`` (``"HxW"``, or longer-side
          buckets when there are many sizes, see ``evaluation.size_slice_keys``): ``examples``,
          ``miou``, ``dice``, ``pixel_accuracy``;
        - ``boundary_f1``: class-agnostic boundary precision / recall / F1 within
          ``BOUNDARY_TOLERANCE`` pixels (``evaluation.BoundaryAccumulator``);
        - ``overlays``: with ``output_dir``, the first ``num_overlays`` eval images written as
          ``overlays/eval_NNN.png`` there (image | truth overlaid | prediction overlaid); the
          file names relative to ``output_dir``."""
        import io
        import os

        from PIL import Image

        from visionpipe.tasks.segmentation import evaluation

        total = self._accumulator()
        edges = evaluation.BoundaryAccumulator(BOUNDARY_TOLERANCE, self.seg.ignore_index)
        overlays: List[str] = []
        image_iou: Dict[str, List[float]] = {name: [] for name in self.class_names}
        rows = []
        for encoded, truth, predicted in self._predicted(self.load_export(export_dir), eval_files):
            matrix = evaluation.confusion(truth, predicted, self.num_classes, self.seg.ignore_index)
            total.matrix += matrix
            edges.add(truth, predicted)
            rows.append((truth.shape, matrix))
            for name, values in evaluation.per_class_from_confusion(matrix, self.class_names).items():
                if values["truth_pixels"]:
                    image_iou[name].append(values["iou"])
            if output_dir and len(overlays) < num_overlays:
                pixels = np.asarray(Image.open(io.BytesIO(bytes(encoded))).convert("RGB"))
                drawn = evaluation.side_by_side(pixels, truth, predicted, self.seg.ignore_index)
                name = os.path.join(OVERLAY_FOLDER, f"eval_{len(overlays):03d}.png")
                buffer = io.BytesIO()
                Image.fromarray(drawn).save(buffer, format="PNG")
                tf.io.gfile.makedirs(os.path.join(output_dir, OVERLAY_FOLDER))
                with tf.io.gfile.GFile(os.path.join(output_dir, name), "wb") as f:
                    f.write(buffer.getvalue())
                overlays.append(name)
        per_class = evaluation.per_class_from_confusion(total.matrix, self.class_names)
        for name, values in per_class.items():
            values["images"] = len(image_iou[name])
            values["image_miou"] = float(np.mean(image_iou[name])) if image_iou[name] else None
        counts: Dict[str, int] = {}
        matrices: Dict[str, np.ndarray] = {}
        for key, (_, matrix) in zip(evaluation.size_slice_keys([shape for shape, _ in rows]), rows):
            counts[key] = counts.get(key, 0) + 1
            matrices[key] = matrices.get(key, 0) + matrix
        by_size = {}
        for key in sorted(counts):
            scores = evaluation.metrics_from_confusion(matrices[key], self.class_names)
            by_size[key] = {"examples": counts[key],
                            **{k: scores[k] for k in ("miou", "dice", "pixel_accuracy")}}
        return {"per_class": per_class, "by_image_size": by_size, "boundary_f1": edges.metrics(),
                "overlays": overlays}

    def report_panels(self, evaluation, evaluation_dir, report_dir):
        """Per-class IoU / Dice table and the overlays ``evaluation_details`` drew (copied
        into the report folder so that it stands alone)."""
        import os

        from visionpipe.report import Panel, copy_in

        details = evaluation.get("details") or {}
        per_class = details.get("per_class") or {}
        out = [Panel("IoU, Dice, precision and recall per class (eval pixels)",
                     headers=("class", "IoU", "Dice", "precision", "recall", "images"),
                     rows=[(name, v.get("iou"), v.get("dice"), v.get("precision"),
                            v.get("recall"), v.get("images")) for name, v in per_class.items()])]
        copied = [copy_in(os.path.join(evaluation_dir, name), report_dir, "segmentation")
                  for name in details.get("overlays") or []]
        if copied:
            out.append(Panel("eval images: image | truth | prediction", images=copied))
        return out

    def score(self, predictions, targets):
        acc = self._accumulator()
        for ids, (h, w), truth in zip(predictions["class_map"], predictions["image_shape"], targets):
            acc.add(truth, np.asarray(ids)[:h, :w])
        return acc.metrics(self.class_names)

    def pixel_counts(self, files) -> np.ndarray:
        """Pixels per class id over the masks of ``files`` (their own size; ignored ones not)."""
        from visionpipe.core.examples import records

        counts = np.zeros(self.num_classes, np.int64)
        for record in records(files):
            mask = decode_mask_png(features.parse_single(record, [features.SEGMENTATION_MASK])[
                features.SEGMENTATION_MASK].numpy()).ravel()
            mask = mask[mask != self.seg.ignore_index]
            counts += np.bincount(mask[mask < self.num_classes], minlength=self.num_classes)
        return counts

    def trivial_metrics(self, eval_files, train_files):
        """Every eval pixel predicted as the training pixels' majority class."""
        from visionpipe.core.examples import records

        majority = int(np.argmax(self.pixel_counts(train_files)))
        acc = self._accumulator()
        for record in records(eval_files):
            truth = self.target_of({k: v.numpy() for k, v in features.parse_single(
                record, [features.SEGMENTATION_MASK]).items()})
            acc.add(truth, np.full_like(truth, majority))
        return {**acc.metrics(self.class_names), "majority_class": self.class_names[majority]}

    def evaluate_model(self, model, dataset) -> Dict[str, float]:
        """Metrics of an in-process Keras model on batched (image, mask) pairs (model size),
        with ``segmentation.test_time_flips`` as the signatures."""
        acc = self._accumulator()
        for images, masks in dataset:
            acc.add(np.asarray(masks)[..., 0], np.argmax(self.probabilities(model, images).numpy(), -1))
        return acc.metrics(self.class_names)

    # --- TFLite -----------------------------------------------------------------------
    def convert_tflite(self, model_or_export_dir, mode: str, representative=None) -> bytes:
        """As ``Task.convert_tflite``, of ``fixed_size_model``: TFLite needs static shapes."""
        model = model_or_export_dir
        if self.seg.train_crop:
            model = self.fixed_size_model(model)
        return super().convert_tflite(model, mode, representative)

    def static_shape_model(self, model):
        return self.fixed_size_model(model) if self.seg.train_crop else model

    def fixed_size_model(self, model_or_export_dir) -> tf.keras.Model:
        """A model trained on crops (its input size left open) rebuilt at ``model.image_size``
        with the same weights."""
        from visionpipe.models import export
        from visionpipe.tasks.segmentation import models

        model = model_or_export_dir
        if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__"):
            model = export.load_keras_model(str(model))
        fixed, _ = models.build(self.config, self.num_classes, fixed_size=True)
        fixed.set_weights(model.get_weights())
        return fixed

    def evaluate_tflite(self, tflite_path, dataset) -> Dict[str, float]:
        """mIoU etc. of a .tflite segmenter (its output: probabilities [B, h, w, C]) on
        batched (image, mask) pairs at model size, from the TFLite interpreter (the plain
        network: one pass, no ``segmentation.test_time_flips``)."""
        from visionpipe.runtime.tflite_runtime import TFLiteModel

        model, acc = TFLiteModel(str(tflite_path)), self._accumulator()
        for images, masks in dataset:
            probabilities = model.scores(np.asarray(images))
            acc.add(np.asarray(masks)[..., 0], np.argmax(probabilities, axis=-1))
        return acc.metrics(self.class_names)

    # --- generated data and presentation ------------------------------------------------
    @classmethod
    def write_generated(cls, source, data, out_dir):
        from visionpipe.tasks.segmentation.generated import write_shapes_segmentation

        return write_shapes_segmentation(out_dir, data), "csv"

    @classmethod
    def present(cls, paths, images, outputs, options):
        """Per image: the share of pixels of each class (by name from ``options.class_names``,
        the export's labels, else by id); with ``options.output_dir`` the
        image with its class map overlaid, ``<stem>.segmentation.png``, and the class map
        itself as an 8-bit PNG of ids, ``<stem>.class_map.png``."""
        import io
        import json
        import os
        from pathlib import Path

        from PIL import Image

        from visionpipe.tasks.segmentation import overlay

        names = list(getattr(options, "class_names", None) or [])
        out_dir = getattr(options, "output_dir", "") or ""
        if out_dir:
            os.makedirs(out_dir, exist_ok=True)
        lines = []
        for i, (path, encoded) in enumerate(zip(paths, images)):
            h, w = (int(v) for v in outputs["image_shape"][i])
            ids = np.asarray(outputs["class_map"][i])[:h, :w]
            counts = np.bincount(ids.ravel(), minlength=max(len(names), int(ids.max()) + 1))
            shares = {(names[c] if c < len(names) else str(c)): round(float(n) / ids.size, 4)
                      for c, n in enumerate(counts) if n}
            row = {"image": path, "size": [h, w], "class_shares": shares}
            if out_dir:
                pixels = np.asarray(Image.open(io.BytesIO(encoded)).convert("RGB"))
                drawn = os.path.join(out_dir, f"{Path(path).stem}.segmentation.png")
                Image.fromarray(overlay.overlay(pixels, ids)).save(drawn)
                class_map = os.path.join(out_dir, f"{Path(path).stem}.class_map.png")
                Image.fromarray(ids.astype(np.uint8), mode="L").save(class_map)
                row["drawn"], row["class_map"] = drawn, class_map
            lines.append(json.dumps(row) if options.as_json else
                         f"{path}: {h}x{w} " + ", ".join(f"{k} {v:.1%}" for k, v in shares.items())
                         + (f" -> {row['drawn']}" if out_dir else ""))
        return lines

    def draw_targets(self, images, targets):
        """The images with their (augmented) masks overlaid."""
        from visionpipe.tasks.segmentation import overlay

        masks = np.asarray(targets)
        return np.stack([overlay.overlay(image, mask[..., 0] if mask.ndim == 3 else mask,
                                         ignore_index=self.seg.ignore_index)
                         for image, mask in zip(super().draw_targets(images, targets), masks)])


def decode_mask_png(data: bytes) -> np.ndarray:
    """uint8 ``[H, W]`` class ids of a mask PNG."""
    import io

    from PIL import Image

    with Image.open(io.BytesIO(bytes(data))) as mask:
        return np.asarray(mask.convert("L") if mask.mode not in ("L", "P") else mask, np.uint8)


def random_crops(images: tf.Tensor, masks: tf.Tensor, size: int, seed):
    """One random ``size`` x ``size`` window per image of a batch, the same window of its
    mask; offsets drawn statelessly from the batch's ``seed`` (see ``data.augment_batches``)."""
    shape = tf.shape(images)
    seed = tf.random.experimental.stateless_fold_in(augment.as_seed(seed), 0x5E6C)
    draws = tf.random.stateless_uniform([shape[0], 2], seed, minval=0, maxval=2 ** 30, dtype=tf.int32)
    offsets = draws % tf.stack([shape[1] - size + 1, shape[2] - size + 1])

    def one(args):
        image, mask, offset = args
        return (image[offset[0]:offset[0] + size, offset[1]:offset[1] + size],
                mask[offset[0]:offset[0] + size, offset[1]:offset[1] + size])

    return tf.map_fn(one, (images, masks, offsets), fn_output_signature=(
        tf.TensorSpec([size, size, *images.shape[3:]], images.dtype),
        tf.TensorSpec([size, size, *masks.shape[3:]], masks.dtype)))


def _encode_pngs(class_map: tf.Tensor, image_shape: tf.Tensor) -> tf.Tensor:
    """One 8-bit grey PNG per class map, cropped to its ``image_shape``."""
    def one(args):
        ids, size = args
        ids = ids[:size[0], :size[1]]
        return tf.io.encode_png(tf.cast(tf.clip_by_value(ids, 0, 255), tf.uint8)[..., None])

    return tf.map_fn(one, (class_map, image_shape), fn_output_signature=tf.TensorSpec([], tf.string))
