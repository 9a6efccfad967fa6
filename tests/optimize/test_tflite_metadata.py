"""TFLite metadata is written as the task declares it (``Task.tflite_metadata_kind``), never
guessed from the output's shape: a detector whose one output happens to have one value per
class is still not labelled an image classifier."""
import numpy as np
import pytest

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.runtime import tflite_convert

CLASSES = ["red", "green", "blue", "white"]
SIZE = 16


def _single_output_model(name: str, units: int = len(CLASSES), activation=None) -> tf.keras.Model:
    tf.keras.utils.set_random_seed(0)
    inputs = tf.keras.Input((SIZE, SIZE, 3), name="pixels")
    x = tf.keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = tf.keras.layers.GlobalAveragePooling2D()(x)
    outputs = tf.keras.layers.Dense(units, activation=activation, name=name)(x)
    return tf.keras.Model(inputs, outputs, name=f"{name}_model")


@pytest.fixture(scope="module")
def box_regressor() -> bytes:
    """A detector-like file: its one output is a box (4 values), and there are 4 classes."""
    return tflite_convert.convert(_single_output_model("detection_boxes"), "float32")


@pytest.fixture(scope="module")
def classifier() -> bytes:
    return tflite_convert.convert(_single_output_model("probabilities", activation="softmax"),
                                  "float32")


def _written(tmp_path, name, tflite_model, kind):
    return tflite_convert.write(str(tmp_path / f"{name}.tflite"),
                                tflite_convert.add_metadata(tflite_model, CLASSES, kind=kind))


def test_detector_file_is_not_labelled_an_image_classifier_when_its_output_has_one_value_per_class(
        tmp_path, box_regressor):
    path = _written(tmp_path, "detector", box_regressor, "generic")
    assert tflite_convert.metadata_kind(path) == "generic"
    assert tflite_convert.read_labels(path) == CLASSES  # the labels travel, attached to the model
    from tensorflow_lite_support.metadata.python import metadata

    displayer = metadata.MetadataDisplayer.with_model_file(path)
    assert "ImageClassifier" not in displayer.get_metadata_json()


def test_image_classifier_kind_labels_the_one_score_per_class_output(tmp_path, classifier):
    path = _written(tmp_path, "classifier", classifier, "image_classifier")
    assert tflite_convert.metadata_kind(path) == "image_classifier"
    assert tflite_convert.read_labels(path) == CLASSES


def test_file_without_metadata_has_no_metadata_kind(tmp_path, classifier):
    path = tflite_convert.write(str(tmp_path / "bare.tflite"), classifier)
    assert tflite_convert.metadata_kind(path) == ""


def test_image_classifier_kind_on_a_file_without_one_score_per_label_is_refused(box_regressor):
    with pytest.raises(ValueError, match=r"needs one output of 3 scores .*\[\[1, 4\]\]"):
        tflite_convert.add_metadata(box_regressor, CLASSES[:3], kind="image_classifier")
    with pytest.raises(ValueError, match="needs the labels"):
        tflite_convert.add_metadata(box_regressor, [], kind="image_classifier")


def test_unknown_metadata_kind_is_refused_naming_the_known_kinds(classifier):
    with pytest.raises(ValueError, match=r"unknown TFLite metadata kind 'detector'.*image_classifier"):
        tflite_convert.add_metadata(classifier, CLASSES, kind="detector")


def test_predict_files_presents_a_generic_file_as_its_outputs_not_as_top_k_labels(
        tmp_path, box_regressor):
    from PIL import Image

    from visionpipe.runtime.tflite_runtime import TFLiteModel, predict_files

    path = _written(tmp_path, "detector", box_regressor, "generic")
    image = tmp_path / "image.png"
    Image.fromarray(np.full((SIZE, SIZE, 3), 200, np.uint8)).save(image)
    (row,) = predict_files(path, [str(image)])
    output_name = TFLiteModel(path).output_names[0]
    assert list(row) == [output_name] and len(row[output_name]) == len(CLASSES)


def test_optimizer_writes_the_metadata_kind_the_task_declares(tmp_path, classifier):
    """A generic task's files stay generic even when the model's one output has one score
    per class (where the old shape guess wrote an ImageClassifier)."""
    from visionpipe.core.config import OptimizeConfig
    from visionpipe.optimize.optimizer import OptimizationInputs, TaskHooks, optimize
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    model = _single_output_model("probabilities", activation="softmax")
    images = np.random.default_rng(0).uniform(0, 255, (4, SIZE, SIZE, 3)).astype(np.float32)
    hooks = TaskHooks(
        evaluate_tflite=lambda path: {"score": float(TFLiteModel(path).scores(images).max())},
        gate_metric="score", compile_model=lambda m, lr: None, tflite_metadata_kind="generic")
    config = OptimizeConfig(ptq_modes=[], qat="off", latency_runs=1, representative_samples=2)
    inputs = OptimizationInputs(model=model, train_batches=tf.data.Dataset.from_tensors(images),
                                calibration_images=list(images), labels=CLASSES)
    report = optimize(inputs, hooks, config, str(tmp_path / "optimized"))
    assert report.blessed_files == ["model_float32.tflite"]
    written = str(tmp_path / "optimized" / "model_float32.tflite")
    assert tflite_convert.metadata_kind(written) == "generic"
    assert tflite_convert.read_labels(written) == CLASSES
