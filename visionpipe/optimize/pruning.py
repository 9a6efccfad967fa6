"""Magnitude pruning with tensorflow-model-optimization: a polynomial schedule to the target
sparsity during a short fine-tune, or 2:4 structured sparsity, then the wrappers are stripped.

Only Conv2D / DepthwiseConv2D / Dense kernels are pruned; nested models (a ``backbone``
sub-model) are pruned layer by layer inside, and every other layer is reused as is.
"""
from __future__ import annotations

import dataclasses
from typing import Callable, Dict, List

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.models.data import count_elements

UNSTRUCTURED = "unstructured"
TWO_BY_FOUR = "2by4"


def _tfmot():
    import keras_cv  # noqa: F401  (must be imported before tfmot)
    import tensorflow_model_optimization as tfmot

    return tfmot


def _wrapper_class():
    _tfmot()
    from tensorflow_model_optimization.python.core.sparsity.keras.pruning_wrapper import (
        PruneLowMagnitude)

    return PruneLowMagnitude


def _prunable(layer: tf.keras.layers.Layer, structure: str) -> bool:
    if structure == TWO_BY_FOUR:
        # m-by-n sparsity groups the input channels in fours; depthwise kernels have none.
        return (isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.Dense))
                and not isinstance(layer, tf.keras.layers.DepthwiseConv2D)
                and int(layer.kernel.shape[-2]) % 4 == 0)
    return isinstance(layer, (tf.keras.layers.Conv2D, tf.keras.layers.DepthwiseConv2D,
                              tf.keras.layers.Dense))


# Share of the fine-tune over which sparsity ramps up to the target; the rest fine-tunes at
# the target sparsity so the network recovers from the last pruning steps (Zhu & Gupta, 2017).
PRUNE_RAMP_FRACTION = 2 / 3


def schedule_steps(total_steps: int) -> Dict[str, int]:
    """begin/end/frequency of the pruning schedule: the final sparsity is applied on a step
    within the first ``PRUNE_RAMP_FRACTION`` of the fine-tune, leaving the rest to recover."""
    if total_steps < 2:
        raise ValueError(f"pruning needs at least 2 fine-tune steps, got {total_steps}")
    ramp_steps = max(2, int(round(total_steps * PRUNE_RAMP_FRACTION)))
    frequency = max(1, ramp_steps // 10)
    end_step = frequency * ((ramp_steps - 1) // frequency)
    return {"begin_step": 0, "end_step": end_step, "frequency": frequency}


def wrap_for_pruning(model: tf.keras.Model, sparsity: float, structure: str,
                     total_steps: int) -> tf.keras.Model:
    """A copy of ``model`` whose prunable layers carry PruneLowMagnitude wrappers (the
    original layers' weights are shared, not re-initialised)."""
    tfmot = _tfmot()
    if structure == TWO_BY_FOUR:
        params = {"sparsity_m_by_n": (2, 4)}
    elif structure == UNSTRUCTURED:
        steps = schedule_steps(total_steps)
        params = {"pruning_schedule": tfmot.sparsity.keras.PolynomialDecay(
            initial_sparsity=0.0, final_sparsity=sparsity, **steps)}
    else:
        raise ValueError(f"unknown pruning structure {structure!r}")

    def wrap(layer):
        if isinstance(layer, tf.keras.Model):
            return tf.keras.models.clone_model(layer, clone_function=wrap)
        if _prunable(layer, structure):
            return tfmot.sparsity.keras.prune_low_magnitude(layer, **params)
        return layer

    wrapped = tf.keras.models.clone_model(model, clone_function=wrap)
    if not any(isinstance(layer, _wrapper_class())
               for layer in _all_layers(wrapped)):
        raise ValueError(f"model {model.name!r} has no layer that can be pruned with "
                         f"structure {structure!r}")
    return wrapped


def _all_layers(model: tf.keras.Model) -> List[tf.keras.layers.Layer]:
    layers = []
    for layer in model.layers:
        layers.append(layer)
        if isinstance(layer, tf.keras.Model):
            layers.extend(_all_layers(layer))
    return layers


def copy_model(model: tf.keras.Model) -> tf.keras.Model:
    """A structurally identical model with its own copy of the weights."""
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    return copy


def strip(model: tf.keras.Model) -> tf.keras.Model:
    wrapper = _wrapper_class()

    def unwrap(layer):
        if isinstance(layer, tf.keras.Model):
            return tf.keras.models.clone_model(layer, clone_function=unwrap)
        if isinstance(layer, wrapper):
            return layer.layer
        return layer

    return tf.keras.models.clone_model(model, clone_function=unwrap)


@dataclasses.dataclass
class PruneResult:
    model: tf.keras.Model  # stripped: plain Keras layers with zeros in their kernels
    layer_sparsity: Dict[str, float]
    overall_sparsity: float  # zeros / weights over the pruned kernels


def kernel_sparsity(model: tf.keras.Model, structure: str = UNSTRUCTURED) -> Dict[str, float]:
    """Fraction of zeros in the kernel of every prunable layer, by layer path."""
    result = {}
    for layer in _all_layers(model):
        if _prunable(layer, structure):
            kernel = layer.kernel.numpy()
            result[layer.name] = float(np.mean(kernel == 0))
    return result


def prune(model: tf.keras.Model, train_batches: tf.data.Dataset,
          compile_fn: Callable[[tf.keras.Model], None], sparsity: float = 0.5,
          structure: str = UNSTRUCTURED, epochs: int = 2) -> PruneResult:
    """Fine-tune a pruned copy of ``model`` on batched (input, target) pairs and strip it.

    ``compile_fn`` compiles a model with the task's loss and a fine-tune learning rate."""
    tfmot = _tfmot()
    steps_per_epoch = count_elements(train_batches)
    # The wrappers train the layers they wrap in place: work on a copy, not the caller's model.
    wrapped = wrap_for_pruning(copy_model(model), sparsity, structure, steps_per_epoch * epochs)
    compile_fn(wrapped)
    wrapped.fit(train_batches, epochs=epochs, verbose=0,
                callbacks=[tfmot.sparsity.keras.UpdatePruningStep()])
    stripped = strip(wrapped)
    per_layer = kernel_sparsity(stripped, structure)
    kernels = [layer.kernel.numpy() for layer in _all_layers(stripped) if _prunable(layer, structure)]
    zeros = sum(int(np.sum(k == 0)) for k in kernels)
    total = sum(k.size for k in kernels)
    return PruneResult(model=stripped, layer_sparsity=per_layer, overall_sparsity=zeros / total)
