"""Keras model -> TFLite flatbuffer: float32, dynamic range, float16 and full-integer int8.

int8 models take int8 pixels and return int8 outputs (their quantization parameters are in the
file), calibrated on images that went through ``visionpipe.models.preprocessing``. Every file
gets TFLite metadata: the input is an RGB image with mean 0 / std 1, because the model's first
layer normalises the [0, 255] pixels itself, plus the labels file, written as the task declares
(``Task.tflite_metadata_kind``: an ImageClassifier's labelled scores, or generic named outputs).
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Iterable, Iterator, List, Optional, Sequence

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

PTQ_MODES = ("float32", "dynamic", "float16", "int8")
LABELS_FILE = "labels.txt"  # the labels' name inside a file's metadata

RepresentativeDataset = Callable[[], Iterator[List[np.ndarray]]]


def representative_dataset(images: Iterable, num_samples: int) -> RepresentativeDataset:
    """A calibration generator over the first ``num_samples`` single images.

    ``images`` yields float32 [S, S, 3] (or batches [N, S, S, 3]) model inputs in [0, 255],
    e.g. a training split mapped through ``preprocessing.preprocess_image``."""
    if num_samples < 1:
        raise ValueError(f"num_samples must be >= 1, got {num_samples}")
    samples: List[np.ndarray] = []
    for item in images:
        array = np.asarray(item, dtype=np.float32)
        batch = array if array.ndim == 4 else array[None]
        for image in batch:
            samples.append(image[None])
            if len(samples) == num_samples:
                break
        if len(samples) == num_samples:
            break
    if not samples:
        raise ValueError("the representative dataset is empty: no training images to calibrate int8")

    def generate() -> Iterator[List[np.ndarray]]:
        for sample in samples:
            yield [sample]

    return generate


def make_converter(model: tf.keras.Model, mode: str,
                   representative: Optional[RepresentativeDataset] = None
                   ) -> tf.lite.TFLiteConverter:
    """A configured converter. int8 always needs a representative dataset: even a
    quantization-aware model has layers (the input normalisation) calibrated from it."""
    if mode not in PTQ_MODES:
        raise ValueError(f"unknown TFLite mode {mode!r}; choose one of {PTQ_MODES}")
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    if mode == "float32":
        return converter
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if mode == "float16":
        converter.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = tf.int8
        converter.inference_output_type = tf.int8
    return converter


def convert(model: tf.keras.Model, mode: str,
            representative: Optional[RepresentativeDataset] = None) -> bytes:
    """The TFLite flatbuffer of ``model`` in ``mode`` (one of PTQ_MODES)."""
    converter = make_converter(model, mode, representative)
    try:
        return converter.convert()
    except Exception as err:  # the converter raises ConverterError, RuntimeError, ValueError...
        raise RuntimeError(f"TFLite {mode} conversion of model {model.name!r} failed: {err}") from err


#: TFLite metadata a task can declare (``Task.tflite_metadata_kind``)
IMAGE_CLASSIFIER = "image_classifier"  # the Task Library's ImageClassifier: labels on one score per class
GENERIC = "generic"  # named outputs, the labels file attached to the model
# the Task Library's ImageSegmenter: one output of per-pixel scores [1, h, w, C], labels on it
IMAGE_SEGMENTER = "image_segmenter"
METADATA_KINDS = (IMAGE_CLASSIFIER, GENERIC, IMAGE_SEGMENTER)


def add_metadata(tflite_model: bytes, labels: Optional[Sequence[str]] = None, *, kind: str,
                 name: str = "VisionPipe model", description: str = "") -> bytes:
    """Embed input normalisation (mean 0, std 1 on [0, 255] pixels) and the labels file, as
    the task declares (``kind``, one of METADATA_KINDS; nothing is guessed from the outputs):

    - ``image_classifier``: the ImageClassifier writer, the labels attached to the one output
      of one score per class (the file must have exactly that output);
    - ``image_segmenter``: the ImageSegmenter writer, the labels attached to the one output
      of per-pixel scores ``[1, h, w, C]`` (one channel per label);
    - ``generic``: every output named as the model names it, the labels file attached to
      the model."""
    if kind not in METADATA_KINDS:
        raise ValueError(f"unknown TFLite metadata kind {kind!r}; choose one of {METADATA_KINDS}")
    image_classifier, metadata_info, metadata_writer = _metadata_writers()
    from tensorflow_lite_support.metadata.python.metadata_writers import image_segmenter

    interpreter = tf.lite.Interpreter(model_content=tflite_model)
    outputs = interpreter.get_output_details()
    if kind == IMAGE_CLASSIFIER:
        shapes = [list(detail["shape"]) for detail in outputs]
        if not labels:
            raise ValueError("TFLite metadata kind 'image_classifier' needs the labels")
        if len(outputs) != 1 or int(outputs[0]["shape"][-1]) != len(labels):
            raise ValueError(f"TFLite metadata kind 'image_classifier' needs one output of "
                             f"{len(labels)} scores (one per label); the model has outputs {shapes}")
    if kind == IMAGE_SEGMENTER:
        shapes = [list(detail["shape"]) for detail in outputs]
        if not labels:
            raise ValueError("TFLite metadata kind 'image_segmenter' needs the labels")
        if len(outputs) != 1 or len(outputs[0]["shape"]) != 4 or int(outputs[0]["shape"][-1]) != len(labels):
            raise ValueError(f"TFLite metadata kind 'image_segmenter' needs one output [1, h, w, "
                             f"{len(labels)}] (a score per pixel and label); the model has "
                             f"outputs {shapes}")
    with tempfile.TemporaryDirectory() as tmp:
        label_files = []
        if labels:
            label_path = os.path.join(tmp, LABELS_FILE)
            with open(label_path, "w") as f:
                f.write("".join(f"{label}\n" for label in labels))
            label_files = [label_path]
        if kind == IMAGE_CLASSIFIER:
            writer = image_classifier.MetadataWriter.create_for_inference(
                bytearray(tflite_model), input_norm_mean=[0.0], input_norm_std=[1.0],
                label_file_paths=label_files)
        elif kind == IMAGE_SEGMENTER:
            writer = image_segmenter.MetadataWriter.create_for_inference(
                bytearray(tflite_model), input_norm_mean=[0.0], input_norm_std=[1.0],
                label_file_paths=label_files)
        else:
            input_md = metadata_info.InputImageTensorMd(
                name="image", description="RGB pixels in [0, 255]; the model normalises them.",
                norm_mean=[0.0], norm_std=[1.0], color_space_type=_rgb(),
                tensor_type=_tensor_type(interpreter.get_input_details()[0]["dtype"]))
            output_md = [metadata_info.TensorMd(name=detail["name"]) for detail in outputs]
            writer = metadata_writer.MetadataWriter.create_from_metadata_info(
                bytearray(tflite_model),
                general_md=metadata_info.GeneralMd(name=name, description=description),
                input_md=[input_md], output_md=output_md, associated_files=label_files)
        return bytes(writer.populate())


def metadata_kind(tflite_path: str) -> str:
    """The metadata kind written into a TFLite file by ``add_metadata``: ``image_segmenter``
    when its one output carries the labels (TENSOR_AXIS_LABELS) and is described as an image
    (the ImageSegmenter's mask), ``image_classifier`` when it carries them otherwise,
    ``generic`` for other metadata, "" for a file without metadata."""
    import json

    _metadata_writers()  # a clear error when the metadata library cannot load
    from tensorflow_lite_support.metadata.python import metadata

    try:
        displayer = metadata.MetadataDisplayer.with_model_file(tflite_path)
    except ValueError:  # no metadata in the file
        return ""
    graphs = json.loads(displayer.get_metadata_json()).get("subgraph_metadata", [])
    outputs = graphs[0].get("output_tensor_metadata", []) if graphs else []
    labelled = [any(f.get("type") == "TENSOR_AXIS_LABELS" for f in out.get("associated_files", []))
                for out in outputs]
    if labelled != [True]:
        return GENERIC
    content = outputs[0].get("content", {}).get("content_properties_type", "")
    return IMAGE_SEGMENTER if content == "ImageProperties" else IMAGE_CLASSIFIER


def _metadata_writers():
    # Import the metadata writers directly: ``import tflite_support`` loads the Task library,
    # whose pybind types clash with TensorFlow's in the same process.
    try:
        from tensorflow_lite_support.metadata.python.metadata_writers import (
            image_classifier, metadata_info, metadata_writer)
    except ImportError as err:
        if "libusb" in str(err):
            raise ImportError("TFLite metadata needs the system library libusb-1.0 "
                              "(Debian/Ubuntu: apt-get install libusb-1.0-0; `make setup` "
                              f"installs it): {err}") from err
        raise
    return image_classifier, metadata_info, metadata_writer


def _rgb():
    from tensorflow_lite_support.metadata import metadata_schema_py_generated as schema

    return schema.ColorSpaceType.RGB


def _tensor_type(dtype):
    from tensorflow_lite_support.metadata import schema_py_generated as schema

    return {np.float32: schema.TensorType.FLOAT32, np.int8: schema.TensorType.INT8,
            np.uint8: schema.TensorType.UINT8}[np.dtype(dtype).type]


def read_labels(tflite_path: str) -> List[str]:
    """The labels embedded in a TFLite file's metadata (empty when it has none)."""
    _metadata_writers()  # a clear error when the metadata library cannot load
    from tensorflow_lite_support.metadata.python import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(tflite_path)
    names = displayer.get_packed_associated_file_list()
    if LABELS_FILE not in names:
        return []
    return displayer.get_associated_file_buffer(LABELS_FILE).decode("utf-8").splitlines()


def write(path: str, tflite_model: bytes) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "wb") as f:
        f.write(tflite_model)
    return path
