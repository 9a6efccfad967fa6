import io
import json
import os

import numpy as np
import pytest
from PIL import Image

import visionpipe  # noqa: F401
import tensorflow as tf
from tfx.types import standard_artifacts

from visionpipe.core import features
from visionpipe.components.model_optimizer import executor as executor_lib
from visionpipe.components.model_optimizer.component import ModelOptimizer
from visionpipe.components.model_optimizer.spec import OptimizedModels, blessed_files
from visionpipe.core.config import PipelineConfig, config_from_dict

from .conftest import digits_pixels

CLASSES = ["0", "1", "2", "3"]


def _example(pixels: np.ndarray, label: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    feature = {
        features.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[buffer.getvalue()])),
        features.FORMAT: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"png"])),
        features.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[label])),
        features.LABEL_TEXT: tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[CLASSES[label].encode()])),
    }
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()


def _write_examples(uri, images, labels):
    for split, rows in {"train": slice(0, 240), "eval": slice(240, 320)}.items():
        os.makedirs(f"{uri}/Split-{split}")
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(f"{uri}/Split-{split}/data.gz", options) as writer:
            for pixels, label in zip(images[rows], labels[rows]):
                writer.write(_example(pixels, int(label)))
    with open(f"{uri}/class_names.json", "w") as f:
        json.dump(CLASSES, f)


def _config():
    config = PipelineConfig()
    config.model.image_size = 16
    config.model.width = 8
    config.model.dropout = 0.0
    config.train.batch_size = 32
    config.optimize.enabled = True
    config.optimize.representative_samples = 32
    config.optimize.latency_runs = 3
    config.optimize.prune = True
    config.optimize.prune_epochs = 1
    config.optimize.distill = True
    config.optimize.student_width = 4
    config.optimize.distill_epochs = 1
    config.optimize.qat = "off"
    return config.validate()


@pytest.fixture(scope="module")
def pipeline_inputs(tmp_path_factory):
    from visionpipe.models import data, export
    from visionpipe.core.examples import split_files
    from visionpipe.tasks import get_task

    root = tmp_path_factory.mktemp("model_optimizer")
    images, labels = digits_pixels()
    keep = labels < len(CLASSES)
    images, labels = images[keep][:320], labels[keep][:320]
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    _write_examples(examples.uri, images, labels)

    config = _config()
    task = get_task(config, CLASSES)
    tf.keras.utils.set_random_seed(0)
    model = task.build_model()
    task.compile_model(model, 3e-3)
    train = data.make_dataset(split_files(examples.uri, "train"), task, 32, training=False)
    model.fit(train, epochs=3, verbose=0)
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(root / "model")
    export.export_saved_model(model, task, os.path.join(model_artifact.uri, "Format-Serving"))
    return {"examples": examples, "model": model_artifact, "config": config, "root": root}


def _run(inputs, name, blessing=None, config=None):
    optimized = OptimizedModels()
    optimized.uri = str(inputs["root"] / name)
    os.makedirs(optimized.uri)
    input_dict = {"examples": [inputs["examples"]], "model": [inputs["model"]]}
    if blessing is not None:
        input_dict["model_blessing"] = [blessing]
    executor_lib.Executor().Do(input_dict, {"optimized": [optimized]},
                               {"config_json": json.dumps((config or inputs["config"]).to_dict())})
    return optimized


def test_executor_writes_gated_tflite_files_report_and_blessed_files_property(pipeline_inputs):
    optimized = _run(pipeline_inputs, "optimized")
    files = set(os.listdir(optimized.uri))
    expected = {"model_float32.tflite", "model_dynamic.tflite", "model_float16.tflite",
                "model_int8.tflite", "model_pruned.tflite", "model_pruned_int8.tflite",
                "model_student.tflite", "report.json", "report.md"}
    assert expected <= files
    report = json.loads(open(os.path.join(optimized.uri, "report.json")).read())
    blessed = blessed_files(optimized)
    assert blessed == report["blessed_files"]
    assert "model_float32.tflite" in blessed and "model_float16.tflite" in blessed
    by_name = {a["name"]: a for a in report["artifacts"]}
    assert set(by_name) == {"float_savedmodel", "float32", "dynamic", "float16", "int8", "pruned",
                            "pruned_int8", "student"}
    for artifact in report["artifacts"]:
        assert artifact["blessed"] == (artifact["file"] in blessed) or not artifact["file"]
        if artifact["max_drop"] is not None:
            assert artifact["blessed"] == (artifact["metric_drop"] <= artifact["max_drop"] + 1e-9)
    assert by_name["pruned"]["notes"]["overall_sparsity"] == pytest.approx(0.5, abs=0.01)
    assert by_name["student"]["notes"]["parameter_ratio"] < 0.35
    student = by_name["student"]["notes"]
    assert student["student_init"] == "teacher"  # weight selection from the trained teacher
    assert student["weights_selected_from_teacher"] > 0 and not student["weights_kept_random"]
    assert by_name["int8"]["size_bytes"] < by_name["float32"]["size_bytes"] * 0.5
    markdown = open(os.path.join(optimized.uri, "report.md")).read()
    assert "| int8 | model_int8.tflite |" in markdown


def test_onnx_classifier_agrees_with_the_savedmodel_and_is_gated_and_blessed(pipeline_inputs):
    from visionpipe.core.examples import split_files
    from visionpipe.models import data
    from visionpipe.runtime.onnx_runtime import OnnxModel
    from visionpipe.tasks import get_task

    config = _config()
    config.optimize.ptq_modes = []
    config.optimize.prune = config.optimize.distill = False
    config.optimize.onnx = True
    optimized = _run(pipeline_inputs, "onnx", config=config)
    report = json.loads(open(os.path.join(optimized.uri, "report.json")).read())
    onnx = {a["name"]: a for a in report["artifacts"]}["onnx"]
    baseline = {a["name"]: a for a in report["artifacts"]}["float32"]["metrics"]["accuracy"]
    assert baseline > 0.5  # a trained model: the gate compares a real signal
    assert onnx["max_drop"] == pytest.approx(config.optimize.max_onnx_drop)
    assert onnx["blessed"] == (baseline - onnx["metrics"]["accuracy"] <= onnx["max_drop"] + 1e-9)
    assert onnx["blessed"] and "model.onnx" in blessed_files(optimized)

    path = os.path.join(optimized.uri, "model.onnx")
    export_dir = os.path.join(pipeline_inputs["model"].uri, "Format-Serving")
    task = get_task(config, CLASSES)
    images = np.concatenate([batch for batch, _ in data.pairs(
        split_files(pipeline_inputs["examples"].uri, "eval"), task).batch(80).as_numpy_iterator()])
    expected = tf.saved_model.load(export_dir).signatures["serving_tensor"](pixels=tf.constant(images))
    got = OnnxModel(path).predict(images)
    np.testing.assert_allclose(got["probabilities"], expected["probabilities"].numpy(), atol=1e-5)
    np.testing.assert_array_equal(got["top_k_ids"], expected["top_k_ids"].numpy())
    assert [list(row) for row in got["top_k_names"]] == [
        [name.decode() for name in row] for row in expected["top_k_names"].numpy()]
    # the report's number is onnxruntime's accuracy of the written file on the eval split
    eval_batches = task.batch_dataset(data.pairs(
        split_files(pipeline_inputs["examples"].uri, "eval"), task), 32)
    assert task.evaluate_onnx(path, eval_batches)["accuracy"] == pytest.approx(
        onnx["metrics"]["accuracy"], abs=1e-9)
    # the Pusher ships the blessed model.onnx inside the pushed version
    from visionpipe.components.pusher.executor import extra_files, push_atomically

    _, pushed = push_atomically(export_dir, str(pipeline_inputs["root"] / "serving" / "m"),
                                extra_files([optimized]))
    assert open(os.path.join(pushed, "model.onnx"), "rb").read() == open(path, "rb").read()


def test_not_blessed_model_is_not_optimized(pipeline_inputs):
    blessing = standard_artifacts.ModelBlessing()
    blessing.uri = str(pipeline_inputs["root"] / "blessing")
    blessing.set_int_custom_property("blessed", 0)
    optimized = _run(pipeline_inputs, "not_blessed", blessing)
    assert blessed_files(optimized) == []
    assert not [f for f in os.listdir(optimized.uri) if f.endswith(".tflite")]


def test_component_takes_the_config_as_json_that_rebuilds_the_same_config():
    from tfx import types

    config = _config()
    component = ModelOptimizer(examples=types.Channel(type=standard_artifacts.Examples),
                               model=types.Channel(type=standard_artifacts.Model), config=config)
    rebuilt = config_from_dict(json.loads(component.exec_properties["config_json"]))
    assert rebuilt.to_dict() == config.to_dict()
    assert component.outputs["optimized"].type is OptimizedModels
