"""DetectionTask end to end on tiny generated scenes: Examples -> example_to_inputs ->
augment -> padded batches -> RetinaNet/YOLOv8/SSD training -> SavedModel with NMS inside ->
serving_default on PNG bytes -> COCO gate component."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from visionpipe.core import features
from visionpipe.models import data
from visionpipe.tasks import get_task
from visionpipe.core.config import PipelineConfig

from .scenes import detection_example, random_scene

CLASSES = ["red", "green"]
SIZE = 64


def _config(architecture: str) -> PipelineConfig:
    config = PipelineConfig(task="detection")
    config.model.image_size = SIZE
    config.model.width = 8
    config.detection.architecture = architecture
    config.detection.anchor_sizes = [12.0, 24.0, 48.0, 96.0, 192.0]
    config.detection.fpn_channels = 16
    config.detection.head_conv_layers = 1
    config.detection.max_detections = 20
    config.evaluate.gate_metric = "map_50"
    config.evaluate.thresholds = {"map_50": 0.0}
    config.evaluate.max_drops = {"map_50": 0.5}
    return config.validate()


def _examples(n: int, seed: int):
    rng = np.random.default_rng(seed)
    return [detection_example(*random_scene(rng, SIZE, len(CLASSES)), CLASSES) for _ in range(n)]


def _pairs(task, serialized):
    return tf.data.Dataset.from_tensor_slices(serialized).map(
        lambda s: task.example_to_inputs(features.parse_single(s, task.feature_keys)))


def test_example_to_inputs_gives_pixel_boxes_and_masks_a_zero_area_box():
    task = get_task(_config("retinanet"), CLASSES)
    image = np.zeros((32, 48, 3), np.uint8)
    boxes = np.array([[0.25, 0.5, 0.75, 1.0], [0.5, 0.5, 0.5, 0.6]], np.float32)  # second: zero height
    pixels, target = task.example_to_inputs(
        features.parse_single(tf.constant(detection_example(image, boxes, np.array([1, 0]), CLASSES)),
                              task.feature_keys))
    assert pixels.shape == (SIZE, SIZE, 3) and pixels.dtype == tf.float32
    np.testing.assert_allclose(target["boxes"][0], [16, 32, 48, 64])
    assert target["classes"].numpy().tolist() == [1, -1]
    assert target["image_shape"].numpy().tolist() == [32, 48]


@pytest.mark.parametrize("architecture", ["retinanet", pytest.param("yolov8", marks=pytest.mark.e2e)])
def test_a_non_square_detector_scales_boxes_per_axis_trains_a_step_and_decodes_per_axis(architecture):
    """model.image_size [32, 64] (height, width): boxes become pixels y*32, x*64; keras-cv's
    anchors / anchor points cover the 32x64 grid, and served boxes are normalised per axis."""
    from visionpipe.tasks.detection import anchors

    config = _config(architecture)
    config.model.image_size = [32, 64]
    task = get_task(config.validate(), CLASSES)
    image = np.zeros((48, 48, 3), np.uint8)  # any source size: the resize stretches each axis
    image[12:36, 12:36] = (255, 0, 0)
    boxes = np.array([[0.25, 0.25, 0.75, 0.75]], np.float32)
    record = detection_example(image, boxes, np.array([0]), CLASSES)
    pixels, target = task.example_to_inputs(features.parse_single(tf.constant(record), task.feature_keys))
    assert pixels.shape == (32, 64, 3)
    np.testing.assert_allclose(target["boxes"], [[8, 16, 24, 48]])

    batch = task.batch_dataset(_pairs(task, [record] * 4), 4)
    model = task.build_model()
    task.compile_model(model, 1e-3)
    assert np.isfinite(model.fit(batch, epochs=1, verbose=0).history["loss"][0])
    images = next(iter(batch))[0]
    raw_boxes, scores = task.raw_predictions(model, images)
    if architecture == "retinanet":
        det = config.detection
        grid = anchors.generate_anchors((32, 64), det.anchor_sizes, det.anchor_strides,
                                        det.anchor_scales, det.anchor_aspect_ratios)
        assert raw_boxes.shape[1] == len(grid)
    else:  # anchor points at strides 8, 16, 32 of a 32x64 input
        assert raw_boxes.shape[1] == 4 * 8 + 2 * 4 + 1 * 2
    out = task.serving_outputs(model, images)
    assert out["detection_boxes"].shape[-1] == 4
    served = out["detection_boxes"].numpy()
    assert (served >= 0).all() and (served <= 1).all()
    (spec,), _ = task.signatures(model)["serving_tensor"].structured_input_signature
    assert spec.shape.as_list() == [None, 32, 64, 3]


@pytest.mark.e2e
@pytest.mark.parametrize("architecture", ["retinanet", "yolov8", "ssd"])
def test_detector_trains_exports_with_nms_and_serves_boxes(tmp_path, architecture):
    from visionpipe.models import export

    config = _config(architecture)
    config.detection.score_threshold = 0.001  # a few steps leave scores near the 0.01 prior
    task = get_task(config, CLASSES)
    train = task.batch_dataset(_pairs(task, _examples(16, seed=1)), 8)
    train = data.augment_batches(train.repeat(), task, seed=7)
    model = task.build_model()
    task.compile_model(model, 2e-3)
    history = model.fit(train, steps_per_epoch=3, epochs=2, verbose=0)
    losses = history.history["loss"]
    assert all(np.isfinite(losses))
    assert task.augmenter().report()["boxes_in"] > 0
    if architecture == "ssd":  # matching and hard-negative mining give a loss that falls
        assert losses[-1] < losses[0], losses

    export_dir = export.export_saved_model(model, task, str(tmp_path / "model"))
    served = tf.saved_model.load(export_dir)
    assert {"serving_default", "serving_examples", "serving_tensor"} <= set(served.signatures)
    rng = np.random.default_rng(9)
    from .scenes import png_bytes

    images = tf.constant([png_bytes(random_scene(rng, SIZE, 2)[0]) for _ in range(2)])
    out = {k: v.numpy() for k, v in served.signatures["serving_default"](images=images).items()}
    assert set(out) == {"detection_boxes", "detection_classes", "detection_class_names",
                        "detection_scores", "num_detections"}
    assert out["detection_boxes"].shape == (2, 20, 4)
    assert out["num_detections"].min() > 0
    n = int(out["num_detections"][0])
    boxes = out["detection_boxes"][0, :n]
    assert (boxes >= 0).all() and (boxes <= 1).all() and (boxes[:, 2] >= boxes[:, 0]).all()
    assert set(out["detection_class_names"][0, :n]) <= {b"red", b"green"}

    if architecture in ("retinanet", "ssd"):
        _check_tflite_keeps_nms_and_matches_keras(task, model, export_dir, tmp_path)
    if architecture == "ssd":
        _check_int8_tflite_keeps_nms(task, export_dir, tmp_path)


def _check_tflite_keeps_nms_and_matches_keras(task, model, export_dir, tmp_path):
    from visionpipe.tasks.detection import evaluation

    path = tmp_path / "detector.tflite"
    path.write_bytes(task.convert_tflite(export_dir, "float32"))  # from the SavedModel
    pixels, _ = next(iter(task.batch_dataset(_pairs(task, _examples(2, seed=4)), 2)))
    lite = evaluation.tflite_predict_fn(str(path))(pixels.numpy())
    keras_out = {k: v.numpy() for k, v in task.serving_outputs(model, pixels).items()}
    assert lite["detection_boxes"].shape == keras_out["detection_boxes"].shape
    np.testing.assert_array_equal(lite["num_detections"], keras_out["num_detections"])
    np.testing.assert_allclose(lite["detection_scores"], keras_out["detection_scores"], atol=1e-4)
    metrics = task.evaluate_tflite(str(path), _pairs(task, _examples(4, seed=5)))
    assert metrics["num_images"] == 4 and 0.0 <= metrics["map_50"] <= 1.0


def _check_int8_tflite_keeps_nms(task, export_dir, tmp_path):
    from visionpipe.tasks.detection import evaluation

    calibration, _ = next(iter(task.batch_dataset(_pairs(task, _examples(8, seed=6)), 8)))

    def representative():
        for image in calibration.numpy():
            yield [image[None]]

    path = tmp_path / "detector_int8.tflite"
    path.write_bytes(task.convert_tflite(export_dir, "int8", representative))
    interpreter = tf.lite.Interpreter(model_path=str(path))
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    pixels, _ = next(iter(task.batch_dataset(_pairs(task, _examples(2, seed=4)), 2)))
    lite = evaluation.tflite_predict_fn(str(path))(pixels.numpy())
    assert lite["detection_boxes"].shape == (2, task.detection.max_detections, 4)
    assert (lite["num_detections"] > 0).all()
    names = {n for n in lite["detection_class_names"][0, :int(lite["num_detections"][0])]}
    assert names <= {b"red", b"green"}


@pytest.mark.e2e
def test_evaluator_blesses_a_detector_against_thresholds_and_the_trivial_floor(tmp_path):
    from tfx.components.evaluator import constants
    from tfx.types import standard_artifacts

    from visionpipe.components.evaluator import executor, spec
    from visionpipe.core.examples import write_class_names
    from visionpipe.models import export

    config = _config("retinanet")
    task = get_task(config, CLASSES)
    model = task.build_model()
    model_artifact = standard_artifacts.Model()
    model_artifact.uri = str(tmp_path / "model")
    model_artifact.id = 7
    export.export_saved_model(model, task, os.path.join(model_artifact.uri, "Format-Serving"))

    examples = standard_artifacts.Examples()
    examples.uri = str(tmp_path / "examples")
    examples.split_names = '["train", "eval"]'
    for split, seed in (("train", 4), ("eval", 3)):
        os.makedirs(os.path.join(examples.uri, f"Split-{split}"))
        with tf.io.TFRecordWriter(os.path.join(examples.uri, f"Split-{split}", "data.gz"),
                                  options="GZIP") as w:
            for record in _examples(4, seed=seed):
                w.write(record)
    write_class_names(examples.uri, CLASSES)

    def run(thresholds, margin):
        config.evaluate.thresholds = thresholds
        config.evaluate.min_margin_over_trivial = margin
        evaluation, blessing = standard_artifacts.ModelEvaluation(), standard_artifacts.ModelBlessing()
        evaluation.uri, blessing.uri = str(tmp_path / "evaluation"), str(tmp_path / "blessing")
        executor.Executor().Do(
            {"examples": [examples], "model": [model_artifact], "baseline_model": []},
            {"evaluation": [evaluation], "blessing": [blessing]},
            {"config_json": json.dumps(config.to_dict()), "eval_split": "eval"})
        report = json.loads(open(os.path.join(evaluation.uri, spec.REPORT_FILE)).read())
        return blessing, report

    blessing, report = run({"map_50": 0.0}, margin=0.0)
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_BLESSED_KEY) == 1
    # TFX's resolvers find the blessed model by this property
    assert blessing.get_int_custom_property(constants.ARTIFACT_PROPERTY_CURRENT_MODEL_ID_KEY) == 7
    assert report["metrics"]["num_images"] == 4 and report["metrics"]["num_ground_truth"] > 0
    assert "map" in report["metrics"] and "ap/red" in report["metrics"]
    assert report["trivial"]["map_50"] == 0.0
    _, report = run({"map_50": 1.01}, margin=0.0)
    assert not report["blessed"] and "below the threshold 1.01" in report["failures"][0]
    # an untrained detector does not beat the detector that finds nothing
    _, report = run({}, margin=0.05)
    assert not report["blessed"] and "does not beat the trivial predictor" in report["failures"][0]


@pytest.mark.e2e
def test_retinanet_learns_generated_scenes_to_a_high_map_50():
    config = _config("retinanet")
    config.model.width = 16
    config.detection.fpn_channels = 32
    config.detection.head_conv_layers = 2
    classes = ["red", "green", "blue"]
    task = get_task(config, classes)
    rng = np.random.default_rng(0)

    def records(n):
        return [detection_example(*random_scene(rng, SIZE, len(classes)), classes) for _ in range(n)]

    train = task.batch_dataset(_pairs(task, records(256)).cache().shuffle(256, seed=1).repeat(), 16)
    train = data.augment_batches(train, task, seed=1)
    model = task.build_model()
    task.compile_model(model, 2e-3)
    model.fit(train, steps_per_epoch=100, epochs=3, verbose=0)
    metrics = task.evaluate_model(model, _pairs(task, records(48)))
    # a wrong box encoding/decoding or NMS would leave this near 0
    assert metrics["map_50"] > 0.8, metrics


@pytest.mark.e2e
def test_project_trainer_trains_a_detector_through_the_task_interface(tmp_path):
    from visionpipe.models import training

    config = _config("retinanet")
    config.train.epochs = 1
    config.train.steps_per_epoch = 2
    config.train.eval_steps = 1
    config.train.batch_size = 4
    files = []
    for split, seed in (("train", 11), ("eval", 12)):
        path = str(tmp_path / f"{split}.gz")
        with tf.io.TFRecordWriter(path, options="GZIP") as writer:
            for record in _examples(8, seed=seed):
                writer.write(record)
        files.append([path])
    task = get_task(config, CLASSES)
    result = training.train(config, task, files[0], files[1], log_dir=str(tmp_path / "logs"))
    assert result.num_train == 8 and np.isfinite(result.history["loss"]).all()
    assert "val_loss" in result.history
    assert result.model.get_layer("backbone").count_params() > 0
