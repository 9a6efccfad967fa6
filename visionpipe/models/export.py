"""Export a trained model as a SavedModel that TF Serving, the Evaluator and Keras all read.

Signatures (see Task.signatures): ``serving_default`` on encoded image bytes (REST
``{"b64": ...}``), ``serving_examples`` on serialized tf.Example (method name as the task
declares: tensorflow/serving/classify for classifiers, so TF Serving's Classify API accepts
it) and ``serving_tensor`` on a float batch. Class names travel as ``assets/labels.txt``; warm-up requests go to
``assets.extra/tf_serving_warmup_requests`` in the format TF Serving replays at load time.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Iterable, List

import visionpipe  # noqa: F401
import tensorflow as tf

CLASSIFY_METHOD = "tensorflow/serving/classify"
TASK_FILE = os.path.join("assets.extra", "visionpipe_task.json")
WARMUP_FILE = os.path.join("assets.extra", "tf_serving_warmup_requests")
LABELS_ASSET = "labels.txt"
SERVING_INPUT = "images"


def export_saved_model(model: tf.keras.Model, task, export_dir: str,
                       warmup_images: Iterable[bytes] = (), model_name: str = "") -> str:
    """Write the SavedModel; returns export_dir."""
    signatures = task.signatures(model)
    with tempfile.TemporaryDirectory() as tmp:
        labels = Path(tmp) / LABELS_ASSET
        labels.write_text("\n".join(task.class_names) + "\n")
        model.class_names_asset = tf.saved_model.Asset(str(labels))
        model.save(export_dir, save_format="tf", signatures=signatures, include_optimizer=False)
    set_method_names(export_dir, task.signature_methods)
    write_task_file(export_dir, task.name)
    for relative, text in task.export_files().items():
        path = Path(export_dir) / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    warmup = list(warmup_images)
    if warmup:
        write_warmup_requests(export_dir, warmup, model_name)
    return export_dir


def write_task_file(export_dir: str, task_name: str) -> str:
    """``assets.extra/visionpipe_task.json``: which task made the export (the CLI presents its
    predictions by it; TF Serving ignores the file)."""
    import json

    path = os.path.join(export_dir, TASK_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump({"task": task_name}, f)
    return path


def read_task_name(export_dir: str) -> str:
    """The task recorded by ``write_task_file`` ("" for an export without the file)."""
    import json

    path = os.path.join(export_dir, TASK_FILE)
    if not tf.io.gfile.exists(path):
        return ""
    with tf.io.gfile.GFile(path) as f:
        return str(json.load(f).get("task", ""))


def set_method_names(export_dir: str, methods) -> None:
    """TF2 saves every signature as 'predict'; TF Serving's Classify and Regress APIs accept
    only signatures marked with their method. ``methods``: {signature name: method name}."""
    from tensorflow.core.protobuf import saved_model_pb2

    pb_path = os.path.join(export_dir, "saved_model.pb")
    saved_model = saved_model_pb2.SavedModel()
    with tf.io.gfile.GFile(pb_path, "rb") as f:
        saved_model.ParseFromString(f.read())
    for meta_graph in saved_model.meta_graphs:
        for signature_name, method in methods.items():
            if signature_name in meta_graph.signature_def:
                meta_graph.signature_def[signature_name].method_name = method
    with tf.io.gfile.GFile(pb_path, "wb") as f:
        f.write(saved_model.SerializeToString())


def write_warmup_requests(export_dir: str, images: List[bytes], model_name: str = "") -> str:
    """One PredictionLog per image on serving_default, then one batched request."""
    from tensorflow_serving.apis import model_pb2, predict_pb2, prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    tf.io.gfile.makedirs(os.path.dirname(path))
    batches = [[image] for image in images] + ([list(images)] if len(images) > 1 else [])
    with tf.io.TFRecordWriter(path) as writer:
        for batch in batches:
            request = predict_pb2.PredictRequest(
                model_spec=model_pb2.ModelSpec(name=model_name, signature_name="serving_default"))
            request.inputs[SERVING_INPUT].CopyFrom(tf.make_tensor_proto(batch, dtype=tf.string))
            log = prediction_log_pb2.PredictionLog(
                predict_log=prediction_log_pb2.PredictLog(request=request))
            writer.write(log.SerializeToString())
    return path


def read_warmup_requests(export_dir: str):
    """The PredictRequests stored in a SavedModel's warm-up file (empty if none)."""
    from tensorflow_serving.apis import prediction_log_pb2

    path = os.path.join(export_dir, WARMUP_FILE)
    if not tf.io.gfile.exists(path):
        return []
    requests = []
    for record in tf.data.TFRecordDataset(path):
        log = prediction_log_pb2.PredictionLog.FromString(record.numpy())
        requests.append(log.predict_log.request)
    return requests


def read_class_names(export_dir: str) -> List[str]:
    path = os.path.join(export_dir, "assets", LABELS_ASSET)
    with tf.io.gfile.GFile(path) as f:
        return [line.rstrip("\n") for line in f if line.strip()]


def load_keras_model(export_dir: str) -> tf.keras.Model:
    """The Keras model inside an exported SavedModel (for fine-tuning and optimization)."""
    return tf.keras.models.load_model(export_dir, compile=False)
