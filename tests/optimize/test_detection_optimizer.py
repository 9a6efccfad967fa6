"""ModelOptimizer on a detector: the task's own conversion keeps decoding and NMS inside the
float16 and int8 files, each file is scored by COCO mAP@.5 with the TFLite interpreter, the
int8 gate compares mAP@.5, and the Keras-rewriting steps are skipped with a reason."""
import json
import os

import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf
from tfx.types import standard_artifacts

from visionpipe.components.model_optimizer import executor as executor_lib
from visionpipe.components.model_optimizer.spec import OptimizedModels, blessed_files
from visionpipe.core.config import PipelineConfig

from ..detection.scenes import detection_example, random_scene

CLASSES = ["red", "green"]
SIZE = 64
DETECTION_OUTPUTS = {"detection_boxes", "detection_scores", "detection_classes", "num_detections"}


def _config() -> PipelineConfig:
    config = PipelineConfig(task="detection")
    config.model.image_size = SIZE
    config.model.width = 8
    config.detection.architecture = "retinanet"
    config.detection.anchor_sizes = [12.0, 24.0, 48.0, 96.0, 192.0]
    config.detection.fpn_channels = 16
    config.detection.head_conv_layers = 1
    config.detection.max_detections = 10
    config.detection.score_threshold = 0.001  # a short training leaves scores near the prior
    config.train.batch_size = 8
    config.evaluate.gate_metric = "map_50"
    config.optimize.enabled = True
    config.optimize.ptq_modes = ["float16", "int8"]
    config.optimize.max_int8_drop = 0.02
    config.optimize.representative_samples = 8
    config.optimize.latency_runs = 2
    config.optimize.prune = True  # asked for, but a keras-cv detector cannot be rewritten
    config.optimize.distill = True
    config.optimize.qat = "always"
    config.optimize.onnx = True
    return config.validate()


def _write_examples(uri: str) -> None:
    rng = np.random.default_rng(0)
    for split, count in {"train": 32, "eval": 16}.items():
        os.makedirs(f"{uri}/Split-{split}")
        options = tf.io.TFRecordOptions(compression_type="GZIP")
        with tf.io.TFRecordWriter(f"{uri}/Split-{split}/data.gz", options) as writer:
            for _ in range(count):
                writer.write(detection_example(*random_scene(rng, SIZE, len(CLASSES)), CLASSES))
    with open(f"{uri}/class_names.json", "w") as f:
        json.dump(CLASSES, f)


@pytest.fixture(scope="module")
def optimized(tmp_path_factory):
    from visionpipe.models import data, export
    from visionpipe.core.examples import split_files
    from visionpipe.tasks import get_task

    root = tmp_path_factory.mktemp("detection_optimizer")
    examples = standard_artifacts.Examples()
    examples.uri = str(root / "examples")
    examples.split_names = json.dumps(["train", "eval"])
    _write_examples(examples.uri)

    config = _config()
    task = get_task(config, CLASSES)
    tf.keras.utils.set_random_seed(0)
    model = task.build_model()
    task.compile_model(model, 3e-3)
    train = task.batch_dataset(data.pairs(split_files(examples.uri, "train"), task).cache(), 8)
    model.fit(train.repeat(), steps_per_epoch=4, epochs=18, verbose=0)  # mAP@.5 ~0.2 in ~5 s
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(root / "model")
    export.export_saved_model(model, task, os.path.join(model_artifact.uri, "Format-Serving"))

    output = _optimize(examples, model_artifact, config, str(root / "optimized"))
    report = json.loads(open(os.path.join(output.uri, "report.json")).read())
    return {"artifact": output, "report": report, "config": config, "examples": examples,
            "model": model_artifact, "root": root}


def _optimize(examples, model_artifact, config, uri):
    output = OptimizedModels()
    output.uri = uri
    os.makedirs(output.uri)
    executor_lib.Executor().Do({"examples": [examples], "model": [model_artifact]},
                               {"optimized": [output]},
                               {"config_json": json.dumps(config.to_dict())})
    return output


def _signature(path: str):
    """(input details, output details) of the file's one signature, by name."""
    runner = tf.lite.Interpreter(model_path=path).get_signature_runner()
    return runner.get_input_details(), runner.get_output_details()


def test_float16_and_int8_detector_files_keep_nms_outputs(optimized):
    uri = optimized["artifact"].uri
    for name in ("model_float32.tflite", "model_float16.tflite", "model_int8.tflite"):
        _, outputs = _signature(os.path.join(uri, name))
        assert DETECTION_OUTPUTS <= set(outputs), (name, sorted(outputs))
    inputs, _ = _signature(os.path.join(uri, "model_int8.tflite"))
    assert next(iter(inputs.values()))["dtype"] == np.int8


def test_every_file_is_scored_by_map50_from_the_tflite_interpreter(optimized):
    from visionpipe.core.examples import split_files
    from visionpipe.models import data
    from visionpipe.tasks import get_task

    report = optimized["report"]
    assert report["gate_metric"] == "map_50"
    by_name = {a["name"]: a for a in report["artifacts"]}
    assert {"float_savedmodel", "float32", "float16", "int8", "onnx"} == set(by_name)
    for artifact in by_name.values():
        assert {"map", "map_50"} <= set(artifact["metrics"])
        assert 0.0 <= artifact["metrics"]["map_50"] <= 1.0
    # the report's number is the interpreter's mAP@.5 of the written file on the eval split
    task = get_task(optimized["config"], CLASSES)
    eval_pairs = data.pairs(split_files(optimized["examples"].uri, "eval"), task)
    int8_path = os.path.join(optimized["artifact"].uri, "model_int8.tflite")
    assert task.evaluate_tflite(int8_path, eval_pairs)["map_50"] == pytest.approx(
        by_name["int8"]["metrics"]["map_50"], abs=1e-6)


def test_int8_gate_uses_map50_drop_and_blessed_files_follow_it(optimized):
    report = optimized["report"]
    by_name = {a["name"]: a for a in report["artifacts"]}
    baseline = by_name["float32"]["metrics"]["map_50"]
    assert baseline > 0.05  # the detector learned, so the gate compares a real signal
    for name in ("float16", "int8"):
        artifact = by_name[name]
        assert artifact["max_drop"] == pytest.approx(0.02)
        expected = baseline - artifact["metrics"]["map_50"] <= 0.02 + 1e-9
        assert artifact["blessed"] == expected
        assert (artifact["file"] in report["blessed_files"]) == expected
    assert blessed_files(optimized["artifact"]) == report["blessed_files"]
    assert "model_float32.tflite" in report["blessed_files"]


def test_keras_rewriting_steps_are_skipped_with_a_reason_not_crashed(optimized):
    skipped = optimized["report"]["skipped"]
    for step in ("qat", "prune", "distill"):
        assert "not available for detection" in skipped[step], skipped
    files = set(os.listdir(optimized["artifact"].uri))
    assert not {"model_qat_int8.tflite", "model_pruned.tflite", "model_student.tflite"} & files


def test_onnx_detector_keeps_nms_inside_and_agrees_with_the_savedmodel(optimized):
    from visionpipe.core.examples import split_files
    from visionpipe.models import data
    from visionpipe.runtime import onnx_convert
    from visionpipe.runtime.onnx_runtime import OnnxModel
    from visionpipe.tasks import get_task

    path = os.path.join(optimized["artifact"].uri, "model.onnx")
    assert {"NonMaxSuppression", "Loop"} <= onnx_convert.op_types(onnx_convert.load_model_proto(path))
    onnx = {a["name"]: a for a in optimized["report"]["artifacts"]}["onnx"]
    assert onnx["notes"]["non_max_suppression_inside"] is True
    baseline = {a["name"]: a for a in optimized["report"]["artifacts"]}["float32"]["metrics"]["map_50"]
    assert onnx["blessed"] == (baseline - onnx["metrics"]["map_50"] <= onnx["max_drop"] + 1e-9)
    assert onnx["blessed"] == ("model.onnx" in optimized["report"]["blessed_files"])

    task = get_task(optimized["config"], CLASSES)
    images = np.stack([image for image, _ in data.pairs(
        split_files(optimized["examples"].uri, "eval"), task).as_numpy_iterator()])
    export_dir = os.path.join(optimized["model"].uri, "Format-Serving")
    expected = {k: v.numpy() for k, v in tf.saved_model.load(export_dir).signatures[
        "serving_tensor"](pixels=tf.constant(images)).items()}
    got = OnnxModel(path).predict(images)
    assert set(got) == set(expected)
    np.testing.assert_array_equal(got["num_detections"], expected["num_detections"])
    np.testing.assert_array_equal(got["detection_classes"], expected["detection_classes"])
    np.testing.assert_allclose(got["detection_boxes"], expected["detection_boxes"], atol=1e-4)
    np.testing.assert_allclose(got["detection_scores"], expected["detection_scores"], atol=1e-5)
    assert got["detection_class_names"].tolist() == [
        [name.decode() for name in row] for row in expected["detection_class_names"]]


def test_detector_files_carry_their_labels(optimized):
    from visionpipe.runtime import tflite_convert

    for name in ("model_float32.tflite", "model_int8.tflite"):
        assert tflite_convert.read_labels(os.path.join(optimized["artifact"].uri, name)) == CLASSES


def test_int8_over_a_strict_map50_gate_is_not_blessed_and_its_repair_is_skipped(optimized):
    config = _config()
    config.optimize.ptq_modes = ["dynamic", "int8"]  # dynamic: not a detector TFLite mode
    config.optimize.max_int8_drop = 0.0
    config.optimize.prune = config.optimize.distill = False
    config.optimize.qat = "off"
    config.optimize.onnx = False
    output = _optimize(optimized["examples"], optimized["model"], config,
                       str(optimized["root"] / "strict"))
    report = json.loads(open(os.path.join(output.uri, "report.json")).read())
    by_name = {a["name"]: a for a in report["artifacts"]}
    drop = by_name["float32"]["metrics"]["map_50"] - by_name["int8"]["metrics"]["map_50"]
    assert by_name["int8"]["blessed"] == (drop <= 1e-9)
    assert ("model_int8.tflite" in report["blessed_files"]) == (drop <= 1e-9)
    assert ("int8_repair" in report["skipped"]) == (drop > 0)
    assert "dynamic" not in by_name and "float32" in report["skipped"]["dynamic"]
