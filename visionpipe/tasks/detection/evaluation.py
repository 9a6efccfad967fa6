"""Run a detector over data and score it with pycocotools.

Three entry points share one accumulation: a served signature on encoded image bytes read
from Examples (what the evaluation gate uses: the exact serving path, original image sizes),
any predict function on (image, target) batches (in-process Keras models), and a TFLite file.
"""
from __future__ import annotations

from typing import Callable, Dict, Iterable, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core import features
from visionpipe.tasks.detection.coco_eval import CocoDetectionEvaluator

EXAMPLE_KEYS = (features.ENCODED, features.HEIGHT, features.WIDTH, features.OBJECT_LABEL,
                *features.BBOX_KEYS)


def evaluate_examples(serving_fn: Callable, serialized: tf.data.Dataset, class_names: Sequence[str],
                      batch_size: int = 16) -> Dict[str, float]:
    """``serving_fn(images=<encoded bytes [B]>)`` returning the detection outputs, scored on
    serialized tf.Examples against their boxes, at each image's own pixel size."""
    evaluator = CocoDetectionEvaluator(class_names)
    for batch in serialized.batch(batch_size):
        parsed = features.parse_examples(batch, keys=EXAMPLE_KEYS)
        outputs = serving_fn(images=parsed[features.ENCODED])
        heights, widths = parsed[features.HEIGHT].numpy(), parsed[features.WIDTH].numpy()
        if np.any(heights <= 0) or np.any(widths <= 0):
            # Examples without a recorded size: fall back to decoding.
            sizes = [tf.image.extract_jpeg_shape(e).numpy()[:2] if _is_jpeg(e)
                     else tf.shape(tf.io.decode_image(e, channels=3)).numpy()[:2]
                     for e in parsed[features.ENCODED].numpy()]
            heights, widths = (np.array(v) for v in zip(*sizes))
        gt_boxes = tf.stack([parsed[k] for k in features.BBOX_KEYS], axis=-1).numpy()
        gt_labels = parsed[features.OBJECT_LABEL].numpy()
        gt_count = tf.shape(parsed[features.BBOX_YMIN])[1]
        label_mask = _ragged_mask(batch, features.OBJECT_LABEL, gt_count)
        _add_batch(evaluator, heights, widths, gt_boxes, np.where(label_mask, gt_labels, -1), outputs)
    return evaluator.evaluate()


def no_detections(images) -> Dict[str, np.ndarray]:
    """What a detector that finds nothing returns (the trivial predictor)."""
    batch = int(np.shape(images)[0])
    return {"detection_boxes": np.zeros([batch, 0, 4], np.float32),
            "detection_classes": np.zeros([batch, 0], np.int32),
            "detection_scores": np.zeros([batch, 0], np.float32),
            "num_detections": np.zeros([batch], np.int32)}


def evaluate_pairs(predict_fn: Callable, batches: Iterable, image_size,
                   class_names: Sequence[str]) -> Dict[str, float]:
    """``predict_fn(pixels [B, h, w, 3])`` -> detection outputs, on batches of
    ``(images, {"boxes": pixel yxyx, "classes", "image_shape"})`` from the task's dataset;
    ``image_size``: the model input's ``(h, w)`` (or one integer, a square)."""
    from visionpipe.models.preprocessing import hw

    height, width = hw(image_size)
    evaluator = CocoDetectionEvaluator(class_names)
    for images, targets in batches:
        outputs = predict_fn(images)
        shapes = np.asarray(targets["image_shape"])
        gt_boxes = np.asarray(targets["boxes"], np.float64) / np.array([height, width, height, width])
        _add_batch(evaluator, shapes[:, 0], shapes[:, 1], gt_boxes, np.asarray(targets["classes"]), outputs)
    return evaluator.evaluate()


def occlude(images: np.ndarray, boxes: np.ndarray, classes: np.ndarray, fraction: float,
            rng: np.random.Generator, fill: float = 127.5) -> np.ndarray:
    """Cover ``fraction`` of every real box's area with a flat grey rectangle of the box's
    aspect ratio, placed at random inside the box (pixel yxyx boxes of the model input)."""
    images = np.array(images, np.float32, copy=True)
    side = np.sqrt(fraction)
    for image, image_boxes, image_classes in zip(images, boxes, classes):
        for (ymin, xmin, ymax, xmax), label in zip(image_boxes, image_classes):
            if label < 0:
                continue
            height, width = (ymax - ymin) * side, (xmax - xmin) * side
            top = ymin + rng.uniform(0, (ymax - ymin) - height)
            left = xmin + rng.uniform(0, (xmax - xmin) - width)
            image[int(round(top)):int(round(top + height)), int(round(left)):int(round(left + width))] = fill
    return images


def occlusion_report(predict_fn: Callable, batches: Sequence, image_size, class_names: Sequence[str],
                     fractions: Sequence[float] = (0.1, 0.25, 0.5), seed: int = 0) -> Dict[str, float]:
    """mAP@.5 and mAP with synthetic occluders over ``fraction`` of each box (0 = clean), so
    robustness to occlusion is a number: ``occluded_<pct>/map_50`` etc."""
    batches = list(batches)
    report: Dict[str, float] = {}
    for fraction in (0.0, *fractions):
        rng = np.random.default_rng(seed)
        occluded = [(occlude(images, targets["boxes"], targets["classes"], fraction, rng) if fraction
                     else images, targets) for images, targets in batches]
        metrics = evaluate_pairs(predict_fn, occluded, image_size, class_names)
        key = f"occluded_{int(round(fraction * 100))}"
        report[f"{key}/map_50"], report[f"{key}/map"] = metrics["map_50"], metrics["map"]
    return report


def tflite_predict_fn(tflite_path: str, signature: str = "serving_tensor") -> Callable:
    """A predict function over a TFLite detector (one image per invoke, batches looped);
    quantised inputs and outputs are (de)quantised with the tensors' own parameters."""
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    signatures = interpreter.get_signature_list()
    if not signatures:
        raise ValueError(f"{tflite_path}: has no signatures; export it from the SavedModel's signatures")
    name = signature if signature in signatures else next(iter(signatures))
    runner = interpreter.get_signature_runner(name)
    (input_name,) = signatures[name]["inputs"]
    input_details = runner.get_input_details()[input_name]
    output_details = runner.get_output_details()

    def predict(images) -> Dict[str, np.ndarray]:
        per_image = []
        for image in np.asarray(images, np.float32):
            result = runner(**{input_name: _quantize(image[None], input_details)})
            per_image.append({k: _dequantize(v, output_details[k]) for k, v in result.items()})
        return {k: np.concatenate([r[k] for r in per_image]) for k in per_image[0]}

    return predict


def _quantize(values: np.ndarray, details) -> np.ndarray:
    dtype = details["dtype"]
    if dtype == np.float32:
        return values
    scale, zero_point = details["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(dtype)


def _dequantize(values: np.ndarray, details) -> np.ndarray:
    scale, zero_point = details.get("quantization", (0.0, 0))
    if scale and np.issubdtype(values.dtype, np.integer) and values.dtype != np.int32:
        return (values.astype(np.float32) - zero_point) * scale
    return values


def _add_batch(evaluator, heights, widths, gt_boxes, gt_labels, outputs) -> None:
    outputs = {k: np.asarray(v) for k, v in outputs.items()}
    for i in range(len(heights)):
        count = int(outputs["num_detections"][i])
        evaluator.add_image(
            int(heights[i]), int(widths[i]), gt_boxes[i], gt_labels[i],
            boxes=outputs["detection_boxes"][i][:count],
            classes=outputs["detection_classes"][i][:count],
            scores=outputs["detection_scores"][i][:count])


def _ragged_mask(serialized_batch, key: str, width) -> np.ndarray:
    """True where a dense-padded list value is real (labels pad with 0, a valid class)."""
    sparse = tf.io.parse_example(serialized_batch, {key: tf.io.VarLenFeature(tf.int64)})[key]
    lengths = tf.math.bincount(tf.cast(sparse.indices[:, 0], tf.int32),
                               minlength=tf.shape(serialized_batch)[0])
    return tf.sequence_mask(lengths, maxlen=width).numpy()


def _is_jpeg(encoded: bytes) -> bool:
    return encoded[:3] == b"\xff\xd8\xff"
