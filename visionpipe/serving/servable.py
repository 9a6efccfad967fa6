"""One loaded model version: its signatures, input checks, execution and warm-up."""
from __future__ import annotations

import dataclasses
import logging
import os
import re
from pathlib import Path
from typing import Dict, Mapping, Optional

import visionpipe  # noqa: F401
import numpy as np
import tensorflow as tf
from tensorflow.core.protobuf import meta_graph_pb2, saved_model_pb2

from visionpipe.serving import errors

log = logging.getLogger(__name__)

PREDICT_METHOD = "tensorflow/serving/predict"
CLASSIFY_METHOD = "tensorflow/serving/classify"
REGRESS_METHOD = "tensorflow/serving/regress"
WARMUP_PATH = os.path.join("assets.extra", "tf_serving_warmup_requests")
MAX_WARMUP_RECORDS = 1000  # TF Serving's cap on warm-up records


@dataclasses.dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: tf.DType
    shape: Optional[tuple]  # None dims are unknown; None shape is unknown rank

    def check(self, array: np.ndarray, what: str) -> None:
        if self.shape is None:
            return
        if array.ndim != len(self.shape):
            raise errors.invalid_argument(
                f"{what} {self.name!r} expects rank {len(self.shape)} (shape {_shape_str(self.shape)}), "
                f"got shape {list(array.shape)}")
        for got, want in zip(array.shape, self.shape):
            if want is not None and got != want:
                raise errors.invalid_argument(
                    f"{what} {self.name!r} expects shape {_shape_str(self.shape)}, got {list(array.shape)}")


def _shape_str(shape) -> str:
    return "[" + ", ".join("-1" if d is None else str(d) for d in shape) + "]"


@dataclasses.dataclass
class Signature:
    name: str
    method_name: str
    inputs: Dict[str, TensorInfo]
    outputs: Dict[str, TensorInfo]
    function: object


def read_meta_graph(export_dir: str | Path) -> meta_graph_pb2.MetaGraphDef:
    """The 'serve' MetaGraphDef from saved_model.pb (for signature metadata and method names)."""
    pb_path = Path(export_dir) / "saved_model.pb"
    try:
        saved_model = saved_model_pb2.SavedModel.FromString(pb_path.read_bytes())
    except Exception as err:  # DecodeError or OSError: a truncated or unreadable file
        raise ValueError(f"{pb_path}: cannot parse SavedModel: {err}") from err
    for meta_graph in saved_model.meta_graphs:
        if "serve" in meta_graph.meta_info_def.tags:
            return meta_graph
    raise ValueError(f"{pb_path}: no MetaGraph tagged 'serve'")


def _tensor_info(name: str, spec) -> TensorInfo:
    shape = None if spec.shape.rank is None else tuple(spec.shape.as_list())
    return TensorInfo(name, spec.dtype, shape)


class LoadedVersion:
    """A SavedModel version loaded in this process."""

    def __init__(self, model_name: str, version: int, export_dir: str | Path):
        self.model_name = model_name
        self.version = version
        self.export_dir = Path(export_dir)
        self.meta_graph = read_meta_graph(self.export_dir)
        self._loaded = tf.saved_model.load(str(self.export_dir), tags=["serve"])
        self.signatures: Dict[str, Signature] = {}
        for sig_name, function in self._loaded.signatures.items():
            _, kwargs = function.structured_input_signature
            outputs = function.structured_outputs
            sig_def = self.meta_graph.signature_def.get(sig_name)
            self.signatures[sig_name] = Signature(
                name=sig_name,
                method_name=sig_def.method_name if sig_def is not None else PREDICT_METHOD,
                inputs={k: _tensor_info(k, spec) for k, spec in kwargs.items()},
                outputs={k: _tensor_info(k, spec) for k, spec in outputs.items()},
                function=function)

    def signature(self, name: str) -> Signature:
        name = name or "serving_default"
        try:
            return self.signatures[name]
        except KeyError:
            raise errors.invalid_argument(
                f"Serving signature name: \"{name}\" not found in signature def "
                f"(available: {', '.join(sorted(self.signatures))})") from None

    def signature_def_map(self) -> meta_graph_pb2.SignatureDef:
        from tensorflow_serving.apis import get_model_metadata_pb2

        sig_map = get_model_metadata_pb2.SignatureDefMap()
        for name, sig_def in self.meta_graph.signature_def.items():
            if name in self.signatures:
                sig_map.signature_def[name].CopyFrom(sig_def)
        return sig_map

    def run(self, signature: Signature, inputs: Mapping[str, np.ndarray]) -> Dict[str, np.ndarray]:
        """Run a signature on checked numpy inputs; TF runtime errors become INVALID_ARGUMENT."""
        feeds = {name: tf.constant(value, dtype=signature.inputs[name].dtype)
                 for name, value in inputs.items()}
        try:
            outputs = signature.function(**feeds)
        except (tf.errors.InvalidArgumentError, tf.errors.OutOfRangeError) as err:
            raise errors.invalid_argument(_first_line(err.message)) from None
        except tf.errors.OpError as err:
            raise errors.internal(_first_line(err.message)) from None
        return {name: tensor.numpy() for name, tensor in outputs.items()}

    def warmup_requests(self):
        """PredictRequests replayed at load, read from assets.extra as TF Serving does."""
        from tensorflow_serving.apis import prediction_log_pb2

        path = self.export_dir / WARMUP_PATH
        if not path.is_file():
            return []
        requests = []
        for i, record in enumerate(tf.data.TFRecordDataset(str(path))):
            if i >= MAX_WARMUP_RECORDS:
                raise ValueError(f"{path}: more than {MAX_WARMUP_RECORDS} warm-up records")
            log_entry = prediction_log_pb2.PredictionLog.FromString(record.numpy())
            kind = log_entry.WhichOneof("log_type")
            if kind != "predict_log":
                raise ValueError(f"{path}: record {i} is a {kind}; only predict_log warm-up is supported")
            requests.append(log_entry.predict_log.request)
        return requests


_TF_NOISE = ("Graph execution error", "Detected at node", "<stack traces unavailable>", "[[", "File ")


def _first_line(message: str) -> str:
    """The op's own error text from a TF runtime message, without node and stack noise."""
    lines = [line.strip() for line in message.split("\n")]
    useful = [line for line in lines if line and not line.startswith(_TF_NOISE)]
    text = useful[0] if useful else lines[0]
    return re.sub(r"\s*\[Op:[^\]]*\]$", "", text)


def _encoded_images(item: bytes):
    """The item itself, or the image/encoded bytes of a serialized tf.Example."""
    if item[:8] == b"\x89PNG\r\n\x1a\n" or item[:2] == b"\xff\xd8" or item[:3] == b"GIF" or item[:2] == b"BM":
        return [item]
    from tensorflow.core.example import example_pb2

    try:
        example = example_pb2.Example.FromString(item)
    except Exception:  # neither an image nor an Example: the model's decoder decides
        return [item]
    feature = example.features.feature.get("image/encoded")
    return list(feature.bytes_list.value) if feature is not None else []


def check_image_pixels(values: np.ndarray, max_pixels: int, input_name: str) -> None:
    """Reject encoded images whose header declares more than ``max_pixels`` before decoding.

    Looks into serialized tf.Examples (classify inputs) for their image/encoded bytes;
    strings that are not images are left to the model."""
    if not max_pixels or values.dtype != object:
        return
    from visionpipe.core.image_limits import ImageTooLarge, check_pixels

    for item in values.reshape(-1):
        if not isinstance(item, bytes) or len(item) < 8:
            continue
        for encoded in _encoded_images(item):
            try:  # an image PIL does not recognise is left to the model's decoder
                check_pixels(encoded, max_pixels)
            except ImageTooLarge as err:
                raise errors.invalid_argument(
                    f"input {input_name!r}: {err} (--max_image_pixels)") from None
