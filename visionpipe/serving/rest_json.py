"""TF Serving's REST JSON formats <-> numpy tensors and tf.Examples.

Follows https://www.tensorflow.org/tfx/serving/api_rest: row (``instances``) and columnar
(``inputs``) requests, answered with ``predictions`` and ``outputs`` respectively; binary
strings as ``{"b64": ...}``; outputs whose name ends in ``_bytes`` are always base64 encoded;
classify/regress ``examples`` with an optional shared ``context``.
"""
from __future__ import annotations

import base64
import binascii
import math
from typing import Any, Dict, List, Mapping, Tuple

import numpy as np

from visionpipe.serving import errors

MAX_NESTING = 32


def is_b64(value: Any) -> bool:
    return isinstance(value, dict) and len(value) == 1 and "b64" in value


def decode_b64(value: dict) -> bytes:
    text = value["b64"]
    if not isinstance(text, str):
        raise errors.invalid_argument("'b64' value must be a string")
    try:
        # TF Serving accepts both the standard and the URL-safe alphabet.
        return base64.b64decode(text.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise errors.invalid_argument(f"Unable to base64 decode {text[:40]!r}") from None


def _leaves(value: Any, depth: int = 0) -> Tuple[Tuple[int, ...], List[Any]]:
    """Shape and row-major leaves of a nested JSON list; ragged lists are an error."""
    if depth > MAX_NESTING:
        raise errors.invalid_argument(f"JSON value nested deeper than {MAX_NESTING} levels")
    if not isinstance(value, list):
        return (), [value]
    if not value:
        return (0,), []
    shapes, leaves = set(), []
    for item in value:
        shape, items = _leaves(item, depth + 1)
        shapes.add(shape)
        leaves.extend(items)
    if len(shapes) != 1:
        raise errors.invalid_argument("Expecting tensor values of the same shape (list is ragged)")
    return (len(value),) + shapes.pop(), leaves


def _string_leaf(leaf: Any, name: str) -> bytes:
    if is_b64(leaf):
        return decode_b64(leaf)
    if isinstance(leaf, str):
        return leaf.encode("utf-8")
    raise errors.invalid_argument(
        f"input {name!r} is a string tensor: expected a string or {{\"b64\": ...}}, got {_kind(leaf)}")


def _kind(value: Any) -> str:
    return {dict: "an object", list: "a list", bool: "a boolean", type(None): "null",
            str: "a string"}.get(type(value), "a number")


def to_ndarray(value: Any, dtype, name: str) -> np.ndarray:
    """A JSON value for one tensor -> ndarray of the signature's dtype (a tf.DType)."""
    shape, leaves = _leaves(value)
    if dtype.name == "string":
        array = np.empty(len(leaves), dtype=object)
        array[:] = [_string_leaf(leaf, name) for leaf in leaves]
        return array.reshape(shape)
    np_dtype = np.dtype(dtype.as_numpy_dtype)
    for leaf in leaves:
        if dtype.name == "bool":
            if not isinstance(leaf, bool):
                raise errors.invalid_argument(f"input {name!r} expects booleans, got {_kind(leaf)}")
        elif isinstance(leaf, bool) or not isinstance(leaf, (int, float)):
            raise errors.invalid_argument(
                f"input {name!r} expects {dtype.name} numbers, got {_kind(leaf)}")
        elif np_dtype.kind in "iu" and isinstance(leaf, float) and not leaf.is_integer():
            raise errors.invalid_argument(f"input {name!r} expects integers, got {leaf}")
    try:
        info = np.iinfo(np_dtype) if np_dtype.kind in "iu" else np.finfo(np_dtype)
        if np_dtype.kind != "b" and any(not info.min <= leaf <= info.max
                                        for leaf in leaves if math.isfinite(leaf)):
            raise OverflowError
        return np.asarray(leaves, dtype=np_dtype).reshape(shape)
    except (OverflowError, ValueError):
        raise errors.invalid_argument(f"input {name!r}: value out of range for {dtype.name}") from None


def predict_inputs(body: Mapping[str, Any], signature) -> Tuple[Dict[str, np.ndarray], bool]:
    """Request JSON -> ({input name: ndarray}, row_format)."""
    has_instances, has_inputs = "instances" in body, "inputs" in body
    if has_instances == has_inputs:
        raise errors.invalid_argument(
            "JSON object must have exactly one of 'instances' (row format) or 'inputs' (columnar format)")
    specs = signature.inputs
    if has_inputs:
        value = body["inputs"]
        if isinstance(value, dict) and not is_b64(value):
            named = value
        else:
            named = {_only_input(specs): value}
        return {name: to_ndarray(v, _spec(specs, name).dtype, name) for name, v in named.items()}, False
    instances = body["instances"]
    if not isinstance(instances, list) or not instances:
        raise errors.invalid_argument("'instances' must be a non-empty list")
    if all(isinstance(i, dict) and not is_b64(i) for i in instances):
        names = set(instances[0])
        if any(set(i) != names for i in instances):
            raise errors.invalid_argument("Every instance must name the same inputs")
        columns = {name: [i[name] for i in instances] for name in names}
    elif any(isinstance(i, dict) and not is_b64(i) for i in instances):
        raise errors.invalid_argument("Instances mix named (object) and unnamed values")
    else:
        columns = {_only_input(specs): instances}
    return {name: to_ndarray(v, _spec(specs, name).dtype, name) for name, v in columns.items()}, True


def _only_input(specs) -> str:
    if len(specs) != 1:
        raise errors.invalid_argument(
            f"The signature has {len(specs)} inputs ({', '.join(sorted(specs))}); name them in each value")
    return next(iter(specs))


def _spec(specs, name: str):
    if name not in specs:
        raise errors.invalid_argument(
            f"input {name!r} is not in the signature (inputs: {', '.join(sorted(specs))})")
    return specs[name]


def _json_value(value: Any, binary: bool) -> Any:
    if isinstance(value, list):
        return [_json_value(v, binary) for v in value]
    if isinstance(value, bytes):
        if not binary:
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                pass
        return {"b64": base64.b64encode(value).decode("ascii")}
    return value


def output_json(name: str, value: np.ndarray) -> Any:
    return _json_value(value.tolist(), name.endswith("_bytes"))


def predict_response(outputs: Mapping[str, np.ndarray], row_format: bool) -> Dict[str, Any]:
    if not row_format:
        if len(outputs) == 1:
            (name, value), = outputs.items()
            return {"outputs": output_json(name, value)}
        return {"outputs": {name: output_json(name, v) for name, v in outputs.items()}}
    batch = {v.shape[0] if v.ndim else None for v in outputs.values()}
    if len(batch) != 1 or None in batch:
        raise errors.invalid_argument(
            "Output tensors differ in 0th dimension, use the columnar ('inputs') format")
    columns = {name: output_json(name, v) for name, v in outputs.items()}
    if len(columns) == 1:
        return {"predictions": next(iter(columns.values()))}
    n = batch.pop()
    return {"predictions": [{name: col[i] for name, col in columns.items()} for i in range(n)]}


def _feature(value: Any, key: str):
    import tensorflow as tf

    values = value if isinstance(value, list) else [value]
    if all(isinstance(v, str) or is_b64(v) for v in values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[decode_b64(v) if is_b64(v) else v.encode("utf-8") for v in values]))
    if all(isinstance(v, int) and not isinstance(v, bool) for v in values):
        if any(not -2**63 <= v < 2**63 for v in values):
            raise errors.invalid_argument(f"feature {key!r}: integer out of int64 range")
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=values))
    raise errors.invalid_argument(
        f"feature {key!r}: values must all be strings/{{\"b64\"}}, all integers or all numbers")


def _example(features: Any, where: str) -> bytes:
    import tensorflow as tf

    if not isinstance(features, dict):
        raise errors.invalid_argument(f"{where} must be a JSON object of features")
    example = tf.train.Example()
    for key, value in features.items():
        example.features.feature[key].CopyFrom(_feature(value, key))
    return example.SerializeToString()


def serialized_examples(body: Mapping[str, Any]) -> List[bytes]:
    """classify/regress request JSON -> serialized Examples (context merged into each)."""
    examples = body.get("examples")
    if not isinstance(examples, list) or not examples:
        raise errors.invalid_argument("'examples' must be a non-empty list of feature objects")
    context = _example(body["context"], "'context'") if "context" in body else b""
    # Concatenated serialized messages parse as a merge: the example's own features win.
    return [context + _example(e, f"examples[{i}]") for i, e in enumerate(examples)]
