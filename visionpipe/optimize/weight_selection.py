"""Initialise a narrower student from the trained teacher ("weight selection", Xu et al.,
ICLR 2024, "Initializing Models with Larger Ones").

Every student weight whose layer has a namesake in the teacher (same layer and variable
name, as two widths of one backbone have) takes a sub-tensor of the teacher's: along each
dimension, ``n`` evenly spaced indices out of the teacher's ``N``. The indices depend only on
``(N, n)``, so the channels a layer keeps as outputs are the channels the next layer keeps as
inputs, and the selected network is a consistent thinner copy of the teacher. Student weights
with no namesake (or a larger shape) keep their random initialisation and are listed.
"""
from __future__ import annotations

import dataclasses
from typing import Dict, List

import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf


@dataclasses.dataclass
class SelectionResult:
    selected: List[str]  # student weights taken from the teacher
    kept_random: Dict[str, str]  # student weight -> why it kept its initialisation


def evenly_spaced(large: int, small: int) -> np.ndarray:
    """``small`` indices spread evenly over ``range(large)`` (all of them when equal)."""
    if small > large:
        raise ValueError(f"cannot select {small} of {large}")
    return np.round(np.linspace(0, large - 1, small)).astype(np.int64)


def select(teacher_value: np.ndarray, student_shape) -> np.ndarray:
    """The evenly spaced sub-tensor of ``teacher_value`` with ``student_shape``."""
    if len(teacher_value.shape) != len(student_shape):
        raise ValueError(f"rank {len(teacher_value.shape)} vs {len(student_shape)}")
    value = teacher_value
    for axis, (large, small) in enumerate(zip(teacher_value.shape, student_shape)):
        value = np.take(value, evenly_spaced(large, small), axis=axis)
    return value


def _by_name(model: tf.keras.Model) -> Dict[str, tf.Variable]:
    # weight names are "<layer>/<variable>:0"; nested models do not prefix them
    return {w.name: w for w in model.weights}


def initialize_from_teacher(teacher: tf.keras.Model, student: tf.keras.Model) -> SelectionResult:
    """Overwrite ``student``'s weights in place with selections of ``teacher``'s."""
    teacher_weights = _by_name(teacher)
    selected, kept = [], {}
    for name, weight in _by_name(student).items():
        source = teacher_weights.get(name)
        if source is None:
            kept[name] = "no weight of that name in the teacher"
            continue
        shape = weight.shape.as_list()
        if len(shape) != len(source.shape) or any(s > t for s, t in zip(shape, source.shape)):
            kept[name] = f"student shape {shape} does not fit in the teacher's {source.shape.as_list()}"
            continue
        weight.assign(select(source.numpy(), shape))
        selected.append(name)
    if not selected:
        raise ValueError(f"student {student.name!r} shares no weight names with teacher "
                         f"{teacher.name!r}: weight selection needs two widths of one backbone")
    return SelectionResult(selected=selected, kept_random=kept)
