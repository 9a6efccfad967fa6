"""TFLite export of a detector with its decoding and NMS inside.

The optimizer's generic ``from_keras_model`` conversion would keep only the raw heads (every
client would have to decode anchors and run NMS itself), so a detector converts from the
task's ``serving_tensor`` function (or the exported SavedModel's signature of that name)
instead: pixels in, detection outputs out. For int8 the
network is fully integer but decoding and NMS may fall back to float builtins (NMS has no
int8 kernel); the input is int8 pixels, the outputs stay float32/int32/string.
"""
from __future__ import annotations

from typing import Callable, Optional

import visionpipe  # noqa: F401
import tensorflow as tf

MODES = ("float32", "float16", "int8")


SIGNATURE = "serving_tensor"


def converter(task, model: tf.keras.Model, mode: str,
              representative: Optional[Callable] = None) -> tf.lite.TFLiteConverter:
    """From the in-process model: the same function as its ``serving_tensor`` signature."""
    height, width = task.image_size
    serving_tensor = tf.function(
        lambda pixels: task.serving_outputs(model, pixels), autograph=False,
        input_signature=[tf.TensorSpec([None, height, width, 3], tf.float32, name="pixels")])
    return _configure(tf.lite.TFLiteConverter.from_concrete_functions(
        [serving_tensor.get_concrete_function()], model), mode, representative)


def saved_model_converter(export_dir: str, mode: str,
                          representative: Optional[Callable] = None) -> tf.lite.TFLiteConverter:
    """From an exported SavedModel's ``serving_tensor`` signature: no Python model needed
    (a reloaded keras-cv detector has lost its anchor generator and decoder)."""
    return _configure(tf.lite.TFLiteConverter.from_saved_model(export_dir, signature_keys=[SIGNATURE]),
                      mode, representative)


def _configure(conv: tf.lite.TFLiteConverter, mode: str,
               representative: Optional[Callable]) -> tf.lite.TFLiteConverter:
    if mode not in MODES:
        raise ValueError(f"unknown detector TFLite mode {mode!r}; choose one of {MODES}")
    if mode == "float16":
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.target_spec.supported_types = [tf.float16]
    elif mode == "int8":
        if representative is None:
            raise ValueError("int8 conversion needs a representative dataset")
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8,
                                          tf.lite.OpsSet.TFLITE_BUILTINS]
        conv.inference_input_type = tf.int8
    return conv


def convert(task, model: tf.keras.Model, mode: str, representative: Optional[Callable] = None) -> bytes:
    return _run(converter(task, model, mode, representative), mode, model.name)


def convert_saved_model(export_dir: str, mode: str, representative: Optional[Callable] = None) -> bytes:
    return _run(saved_model_converter(export_dir, mode, representative), mode, export_dir)


def _run(conv: tf.lite.TFLiteConverter, mode: str, what: str) -> bytes:
    try:
        return conv.convert()
    except Exception as err:  # ConverterError, RuntimeError, ValueError...
        raise RuntimeError(f"TFLite {mode} conversion of detector {what} failed: {err}") from err
