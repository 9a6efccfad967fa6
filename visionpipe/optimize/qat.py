"""Quantization-aware training with tfmot: fake-quantize weights and activations during a
short fine-tune so the int8 TFLite conversion keeps the float model's accuracy.

tfmot cannot quantize a Keras model nested inside another (the ``backbone`` sub-model), so
nested functional models are first inlined into one flat graph that shares their layers.
"""
from __future__ import annotations

from typing import Callable, List

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.optimize.pruning import copy_model


def _tfmot():
    import keras_cv  # noqa: F401  (must be imported before tfmot)
    import tensorflow_model_optimization as tfmot

    return tfmot


def _is_functional(layer) -> bool:
    return isinstance(layer, tf.keras.Model) and getattr(layer, "_is_graph_network", False)


def _call_graph(model: tf.keras.Model, inputs: List) -> List:
    """Call ``model``'s layers on ``inputs`` node by node (as Keras' own functional call
    does), descending into nested functional models instead of calling them as one layer."""
    usage = model._tensor_usage_count  # noqa: SLF001
    tensors = {}
    for x, y in zip(model.inputs, inputs):
        tensors[str(id(x))] = [y] * usage[str(id(x))]
    for depth in sorted(model._nodes_by_depth, reverse=True):  # noqa: SLF001
        for node in model._nodes_by_depth[depth]:  # noqa: SLF001
            if node.is_input or any(i not in tensors for i in node.flat_input_ids):
                continue
            args, kwargs = node.map_arguments(tensors)
            if _is_functional(node.layer):
                outputs = _call_graph(node.layer, tf.nest.flatten(args))
                outputs = outputs[0] if len(outputs) == 1 else outputs
            else:
                outputs = node.layer(*args, **kwargs)
            for x_id, y in zip(node.flat_output_ids, tf.nest.flatten(outputs)):
                tensors[x_id] = [y] * usage[x_id]
    return [tensors[str(id(x))].pop() for x in model.outputs]


def flatten_nested(model: tf.keras.Model) -> tf.keras.Model:
    """One functional model with the layers of every nested functional model inlined."""
    if not any(_is_functional(layer) for layer in model.layers):
        return model
    inputs = [tf.keras.Input(type_spec=x.type_spec, name=x.name.split(":")[0]) for x in model.inputs]
    outputs = _call_graph(model, inputs)
    return tf.keras.Model(inputs, outputs if len(outputs) > 1 else outputs[0], name=model.name)


def _custom_objects(model: tf.keras.Model):
    """Classes of the model's non-Keras layers, which quantize_apply must be able to clone."""
    return {type(layer).__name__: type(layer) for layer in model.layers
            if not type(layer).__module__.startswith(("keras", "tf_keras", "tensorflow"))}


def quantization_aware_model(model: tf.keras.Model) -> tf.keras.Model:
    """A fake-quantized copy of ``model`` (the caller's model is not changed)."""
    tfmot = _tfmot()
    from tensorflow_model_optimization.python.core.quantization.keras.default_8bit import (
        default_8bit_quantize_registry)

    registry = default_8bit_quantize_registry.Default8BitQuantizeRegistry()
    keras_quant = tfmot.quantization.keras

    # Layers the 8-bit scheme does not know (e.g. the Rescaling that normalises pixels) stay
    # float in the Keras graph; the TFLite converter quantizes them from calibrated ranges.
    def annotate(layer):
        return keras_quant.quantize_annotate_layer(layer) if registry.supports(layer) else layer

    flat = flatten_nested(copy_model(model))
    try:
        annotated = tf.keras.models.clone_model(flat, clone_function=annotate)
        with keras_quant.quantize_scope(_custom_objects(flat)):
            return keras_quant.quantize_apply(annotated)
    except (ValueError, RuntimeError) as err:
        raise ValueError(f"quantization-aware training does not support model "
                         f"{model.name!r}: {err}") from None


def train_quantization_aware(model: tf.keras.Model, train_batches: tf.data.Dataset,
                             compile_fn: Callable[[tf.keras.Model], None],
                             epochs: int = 1) -> tf.keras.Model:
    """Fine-tune a quantization-aware copy of ``model``; convert it with
    ``tflite_convert.convert(model, "int8", representative)``."""
    qat_model = quantization_aware_model(model)
    compile_fn(qat_model)
    qat_model.fit(train_batches, epochs=epochs, verbose=0)
    return qat_model
