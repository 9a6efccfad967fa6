"""Exported SavedModel -> ONNX with tf2onnx, from one serving signature.

The ``serving_tensor`` signature (float32 pixels in [0, 255] in, the task's outputs out) is
what is converted, so the file computes what that signature computes, post-processing
included: a classifier's probabilities and top-k, a detector's decoding and class-aware NMS
(TensorFlow's NonMaxSuppressionV4 becomes ONNX NonMaxSuppression inside a Loop over the batch).
tf2onnx leaves an op it cannot map in the graph under its TensorFlow name, so a file that
onnxruntime cannot load is refused here, naming the ops, instead of being written.
"""
from __future__ import annotations

from typing import Iterator, List, Set

import visionpipe  # noqa: F401
import tensorflow as tf

SIGNATURE = "serving_tensor"
OPSET = 17  # ONNX opset: onnxruntime 1.20 runs it; tf2onnx 1.16 writes up to 18


def convert_saved_model(export_dir: str, signature: str = SIGNATURE, opset: int = OPSET) -> bytes:
    """The serialized ONNX model of ``export_dir``'s ``signature``; its input and output
    names are the signature's (``pixels``; ``probabilities``, ``detection_boxes``, ...)."""
    import tf2onnx

    loaded = tf.saved_model.load(export_dir)
    if signature not in loaded.signatures:
        raise ValueError(f"{export_dir}: no signature {signature!r} to convert to ONNX; "
                         f"has {sorted(loaded.signatures)}")
    function = loaded.signatures[signature]
    (name, spec), = function.structured_input_signature[1].items()
    wrapped = tf.function(lambda tensor: function(**{name: tensor}),
                          input_signature=[tf.TensorSpec(spec.shape, spec.dtype, name=name)])
    with _quiet_tf2onnx():
        model_proto, _ = tf2onnx.convert.from_function(
            wrapped, input_signature=wrapped.input_signature, opset=opset)
    unmapped = _unmapped_ops(model_proto)
    if unmapped:
        raise RuntimeError(f"{export_dir}: tf2onnx left TensorFlow ops without an ONNX "
                           f"equivalent in signature {signature!r}: {unmapped}")
    return model_proto.SerializeToString()


def op_types(model_proto) -> Set[str]:
    """Every node's op type, subgraphs (Loop and If bodies) included."""
    return {node.op_type for node in _nodes(model_proto)}


def load_model_proto(path: str):
    import onnx

    return onnx.load(path)


def _nodes(model_proto) -> Iterator:
    graphs = [model_proto.graph]
    while graphs:
        graph = graphs.pop()
        for node in graph.node:
            yield node
            for attribute in node.attribute:
                graphs.extend([attribute.g] if attribute.HasField("g") else [])
                graphs.extend(attribute.graphs)


def _unmapped_ops(model_proto) -> List[str]:
    """Op types in the default ONNX domain that ONNX does not define (TensorFlow leftovers)."""
    import onnx

    return sorted({node.op_type for node in _nodes(model_proto)
                   if node.domain in ("", "ai.onnx") and not onnx.defs.has(node.op_type)})


class _quiet_tf2onnx:
    """tf2onnx logs every rewrite at INFO; keep its warnings and errors only."""

    def __enter__(self):
        import logging

        self.logger = logging.getLogger("tf2onnx")
        self.level = self.logger.level
        self.logger.setLevel(logging.WARNING)

    def __exit__(self, *exc):
        self.logger.setLevel(self.level)
