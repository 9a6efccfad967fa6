"""Run a VisionPipe .tflite file on images.

Images are decoded and resized with ``visionpipe.models.preprocessing`` (the same function
as training and every serving signature), so on-device results match the SavedModel. int8
inputs are quantized and int8 outputs dequantized with the parameters stored in the file.
The default CPU path is TFLite's built-in XNNPACK delegate.
"""
from __future__ import annotations

import time
from typing import Dict, Iterable, List, Optional, Sequence, Tuple

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models import preprocessing


def _quantize(values: np.ndarray, detail: dict) -> np.ndarray:
    scale, zero_point = detail["quantization"]
    if detail["dtype"] == np.float32 or scale == 0:
        return values.astype(detail["dtype"])
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(values / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def _dequantize(values: np.ndarray, detail: dict) -> np.ndarray:
    if not np.issubdtype(values.dtype, np.number):
        return values  # e.g. a detector's class-name strings
    scale, zero_point = detail["quantization"]
    if values.dtype == np.float32 or scale == 0:
        return values.astype(np.float32)
    return (values.astype(np.float32) - zero_point) * scale


class TFLiteModel:
    """A .tflite image model with one image input.

    ``predict`` takes float32 [N, h, w, 3] pixels in [0, 255] (``image_size`` is the input's
    ``(h, w)``, square or not); ``predict_encoded`` takes encoded image bytes of any size and
    resizes them to it. Both return {output name: float32 array}."""

    def __init__(self, model_path: Optional[str] = None, model_content: Optional[bytes] = None,
                 num_threads: Optional[int] = None, use_xnnpack: bool = True):
        if (model_path is None) == (model_content is None):
            raise ValueError("give exactly one of model_path or model_content")
        self.model_path = model_path
        resolver = (tf.lite.experimental.OpResolverType.AUTO if use_xnnpack
                    else tf.lite.experimental.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)
        try:
            self._interpreter = tf.lite.Interpreter(
                model_path=model_path, model_content=model_content, num_threads=num_threads,
                experimental_op_resolver_type=resolver)
        except ValueError as err:
            raise ValueError(f"{model_path or 'model_content'}: not a valid TFLite model: {err}") from None
        inputs = self._interpreter.get_input_details()
        if len(inputs) != 1 or len(inputs[0]["shape"]) != 4 or inputs[0]["shape"][-1] != 3:
            raise ValueError(f"{model_path or 'model_content'}: expected one image input "
                             f"[N, height, width, 3], got {[list(d['shape']) for d in inputs]}")
        self._input = inputs[0]
        self._outputs = self._interpreter.get_output_details()
        self._output_names = self._signature_output_names()
        self._batch_resizable = int(self._input["shape_signature"][0]) == -1
        self._batch = int(self._input["shape"][0])
        self._interpreter.allocate_tensors()

    def _signature_output_names(self) -> List[str]:
        """Output names from the serving signature, in the order of ``get_output_details``."""
        signatures = self._interpreter.get_signature_list()
        if len(signatures) == 1:
            runner = self._interpreter.get_signature_runner(next(iter(signatures)))
            by_index = {detail["index"]: name for name, detail in runner.get_output_details().items()}
            if all(detail["index"] in by_index for detail in self._outputs):
                return [by_index[detail["index"]] for detail in self._outputs]
        return [detail["name"] for detail in self._outputs]

    @property
    def image_size(self) -> Tuple[int, int]:
        """The input's ``(height, width)``."""
        return int(self._input["shape"][1]), int(self._input["shape"][2])

    @property
    def input_dtype(self) -> np.dtype:
        return np.dtype(self._input["dtype"])

    @property
    def output_dtypes(self) -> List[np.dtype]:
        return [np.dtype(detail["dtype"]) for detail in self._outputs]

    @property
    def output_names(self) -> List[str]:
        return list(self._output_names)

    def labels(self) -> List[str]:
        """Labels embedded in the file's metadata (empty when there are none)."""
        if self.model_path is None:
            return []
        from visionpipe.runtime.tflite_convert import read_labels

        try:
            return read_labels(self.model_path)
        except ValueError:  # no metadata in the file
            return []

    def _invoke(self, batch: np.ndarray) -> List[np.ndarray]:
        if batch.shape[0] != self._batch:
            self._interpreter.resize_tensor_input(self._input["index"], batch.shape)
            self._interpreter.allocate_tensors()
            self._batch = batch.shape[0]
            self._outputs = self._interpreter.get_output_details()
        self._interpreter.set_tensor(self._input["index"], _quantize(batch, self._input))
        self._interpreter.invoke()
        return [_dequantize(self._interpreter.get_tensor(d["index"]), d) for d in self._outputs]

    def predict(self, images: np.ndarray, batch_size: int = 32) -> Dict[str, np.ndarray]:
        """float32 [N, h, w, 3] pixels in [0, 255] -> {output name: float32 [N, ...]}."""
        images = np.asarray(images, dtype=np.float32)
        expected = (*self.image_size, 3)
        if images.ndim != 4 or images.shape[1:] != expected:
            raise ValueError(f"images must be [N, {expected[0]}, {expected[1]}, 3], got {images.shape}")
        step = batch_size if self._batch_resizable else self._batch
        chunks = [self._invoke(images[i:i + step]) for i in range(0, len(images), step)]
        return {name: np.concatenate([chunk[k] for chunk in chunks])
                for k, name in enumerate(self._output_names)}

    def predict_encoded(self, encoded_images: Sequence[bytes]) -> Dict[str, np.ndarray]:
        """Encoded images (JPEG, PNG, ...; any size) -> {output name: float32 [N, ...]}."""
        size = self.image_size
        pixels = np.stack([preprocessing.preprocess_image(tf.constant(e), size).numpy()
                           for e in encoded_images])
        return self.predict(pixels)

    def scores(self, images: np.ndarray, batch_size: int = 32) -> np.ndarray:
        """The one output of a single-output model (e.g. class probabilities)."""
        outputs = self.predict(images, batch_size)
        if len(outputs) != 1:
            raise ValueError(f"model has {len(outputs)} outputs ({sorted(outputs)}); use predict()")
        return next(iter(outputs.values()))

    def classify_encoded(self, encoded_images: Sequence[bytes], top_k: int = 3
                         ) -> List[List[Tuple[str, float]]]:
        """Top-k (label, score) per image for a single-output classifier."""
        outputs = self.predict_encoded(encoded_images)
        if len(outputs) != 1:
            raise ValueError(f"classify needs a single-output model, this one has {sorted(outputs)}")
        scores = next(iter(outputs.values()))
        labels = self.labels() or [str(i) for i in range(scores.shape[-1])]
        top = np.argsort(-scores, axis=-1)[:, :top_k]
        return [[(labels[i], float(row[i])) for i in idx] for row, idx in zip(scores, top)]

    def median_latency_ms(self, runs: int = 50, warmup: int = 5, seed: int = 0) -> float:
        """Median wall time of one batch-1 invoke, in milliseconds."""
        image = np.random.default_rng(seed).uniform(
            0, 255, (1, *self.image_size, 3)).astype(np.float32)
        for _ in range(warmup):
            self._invoke(image)
        times = []
        for _ in range(runs):
            start = time.perf_counter()
            self._invoke(image)
            times.append(time.perf_counter() - start)
        return float(np.median(times) * 1e3)


def top1_accuracy(model: TFLiteModel, batches: Iterable[Tuple[np.ndarray, np.ndarray]]) -> float:
    """Fraction of images whose arg-max class equals the integer label."""
    correct = total = 0
    for images, labels in batches:
        predicted = np.argmax(model.scores(np.asarray(images)), axis=-1)
        labels = np.asarray(labels).reshape(-1)
        correct += int(np.sum(predicted == labels))
        total += len(labels)
    if total == 0:
        raise ValueError("no images to evaluate")
    return correct / total


def predict_files(tflite_path: str, image_paths: Sequence[str], top_k: int = 3) -> List[Dict]:
    """Per image file: top-k class names and scores for a file whose metadata declares an
    image classifier (labels on its one output), otherwise every output as a list (for
    ``visionpipe predict --tflite``)."""
    from visionpipe.runtime.tflite_convert import IMAGE_CLASSIFIER, metadata_kind

    model = TFLiteModel(tflite_path)
    labels = model.labels()
    classifier = bool(labels) and metadata_kind(tflite_path) == IMAGE_CLASSIFIER
    size = model.image_size
    pixels = []
    for path in image_paths:
        with open(path, "rb") as f:  # FileNotFoundError names the path
            encoded = f.read()
        try:
            pixels.append(preprocessing.preprocess_image(tf.constant(encoded), size).numpy())
        except tf.errors.InvalidArgumentError:
            raise ValueError(f"{path}: not a decodable image (JPEG, PNG, GIF or BMP)") from None
    outputs = model.predict(np.stack(pixels))
    results = []
    for i in range(len(image_paths)):
        if classifier:
            scores = next(iter(outputs.values()))[i]
            best = np.argsort(-scores)[:top_k]
            results.append({"top_k_names": [labels[j] for j in best],
                            "top_k_scores": [round(float(scores[j]), 6) for j in best]})
        else:
            results.append({name: values[i].tolist() for name, values in outputs.items()})
    return results
