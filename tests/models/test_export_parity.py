"""One preprocessing function: the same image reaches the model identically through training,
serving_default (bytes), serving_examples (tf.Example), serving_tensor and TFLite."""
import copy

import numpy as np
import pytest
import tensorflow as tf

from visionpipe.core import features
from visionpipe.models import data, export, preprocessing
from visionpipe.core.examples import records, split_files
from visionpipe.tasks import get_task
from visionpipe.tasks.classification.task import ClassificationTask


class PixelEchoTask(ClassificationTask):
    """A classifier whose 'model' returns its input, so every path shows what the model sees."""

    def build_model(self):
        inputs = tf.keras.Input((*self.image_size, 3), name="pixels")
        return tf.keras.Model(inputs, tf.keras.layers.Flatten()(inputs))

    def serving_outputs(self, model, images):
        return {"model_input": model(images)}

    examples_outputs = serving_outputs


def _examples(examples_uri, n=6):
    serialized = list(records(split_files(examples_uri, "eval")).take(n).as_numpy_iterator())
    encoded = [features.parse_single(r, [features.ENCODED])[features.ENCODED].numpy()
               for r in serialized]
    return serialized, encoded


def _at_size(config, image_size):
    resized = copy.deepcopy(config)
    resized.model.image_size = image_size
    return resized.validate()


@pytest.mark.parametrize("image_size", [16, [32, 48]], ids=["square", "32x48"])
def test_same_image_gives_the_same_model_input_through_every_path(digits_examples, tmp_path,
                                                                 image_size):
    config, examples_uri, names = digits_examples
    task = PixelEchoTask(_at_size(config, image_size), names)
    model = task.build_model()
    export_dir = str(tmp_path / "echo")
    export.export_saved_model(model, task, export_dir)
    records, encoded = _examples(examples_uri)

    training_inputs = np.stack([x.numpy().ravel() for x, _ in
                                data.pairs(split_files(examples_uri, "eval"), task).take(len(records))])
    loaded = tf.saved_model.load(export_dir)
    by_bytes = loaded.signatures["serving_default"](images=tf.constant(encoded))["model_input"].numpy()
    by_example = loaded.signatures["serving_examples"](inputs=tf.constant(records))["model_input"].numpy()
    pixels = preprocessing.preprocess_batch(tf.constant(encoded), task.image_size)
    by_tensor = loaded.signatures["serving_tensor"](pixels=pixels)["model_input"].numpy()

    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    tflite_path = tmp_path / "echo.tflite"
    tflite_path.write_bytes(converter.convert())
    interpreter = tf.lite.Interpreter(model_path=str(tflite_path))
    interpreter.resize_tensor_input(interpreter.get_input_details()[0]["index"], list(pixels.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], pixels.numpy())
    interpreter.invoke()
    by_tflite = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])

    for other in (by_bytes, by_example, by_tensor, by_tflite):
        np.testing.assert_allclose(other, training_inputs, atol=1e-6)
    assert training_inputs.std() > 10  # real images, not a constant
    height, width = task.image_size
    assert pixels.shape[1:] == (height, width, 3)
    assert training_inputs.shape[1] == height * width * 3


def test_a_non_square_classifier_trains_exports_and_its_signatures_and_tflite_agree(
        digits_examples, tmp_path):
    """model.image_size [32, 48]: one training step, export, then serving_default (bytes),
    serving_tensor (pixels) and the TFLite runtime (bytes, its own resize) on the same image."""
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    config, examples_uri, names = digits_examples
    config = _at_size(config, [32, 48])
    task = get_task(config, names)
    assert task.image_size == (32, 48)
    model = task.build_model()
    task.compile_model(model, 1e-3)
    batch = data.make_dataset(split_files(examples_uri, "train"), task, 16, training=True).take(1)
    history = model.fit(batch, epochs=1, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    assert model.input_shape == (None, 32, 48, 3)
    export_dir = export.export_saved_model(model, task, str(tmp_path / "export"))
    loaded = tf.saved_model.load(export_dir)
    assert loaded.signatures["serving_tensor"].structured_input_signature[1]["pixels"].shape.as_list() \
        == [None, 32, 48, 3]
    _, encoded = _examples(examples_uri, 1)
    by_bytes = loaded.signatures["serving_default"](images=tf.constant(encoded))["probabilities"].numpy()
    pixels = preprocessing.preprocess_batch(tf.constant(encoded), (32, 48))
    by_tensor = loaded.signatures["serving_tensor"](pixels=pixels)["probabilities"].numpy()
    tflite_path = tmp_path / "model.tflite"
    tflite_path.write_bytes(task.convert_tflite(export_dir, "float32"))
    runtime = TFLiteModel(str(tflite_path))
    assert runtime.image_size == (32, 48)
    by_tflite = runtime.predict_encoded(encoded)
    (tflite_probabilities,) = by_tflite.values()
    np.testing.assert_allclose(by_tensor, by_bytes, atol=1e-5)
    np.testing.assert_allclose(tflite_probabilities, by_bytes, atol=1e-4)
    assert by_bytes.shape == (1, len(names))


def test_three_signatures_agree_on_the_same_images(trained, digits_examples):
    task, _, export_dir = trained
    _, examples_uri, names = digits_examples
    records, encoded = _examples(examples_uri, 8)
    loaded = tf.saved_model.load(export_dir)
    default = loaded.signatures["serving_default"](images=tf.constant(encoded))
    classify = loaded.signatures["serving_examples"](inputs=tf.constant(records))
    tensor = loaded.signatures["serving_tensor"](
        pixels=preprocessing.preprocess_batch(tf.constant(encoded), task.image_size))
    np.testing.assert_allclose(default["probabilities"], classify["scores"], atol=1e-5)
    np.testing.assert_allclose(default["probabilities"], tensor["probabilities"], atol=1e-5)
    top = default["top_k_ids"].numpy()[:, 0]
    assert [n.decode() for n in default["top_k_names"].numpy()[:, 0]] == [names[i] for i in top]
    assert classify["classes"].numpy()[0].tolist() == [n.encode() for n in names]


def test_export_carries_class_names_warmup_requests_and_a_classify_signature(trained, digits_examples):
    from tensorflow.core.protobuf import saved_model_pb2

    _, _, export_dir = trained
    _, _, names = digits_examples
    assert export.read_class_names(export_dir) == names
    requests = export.read_warmup_requests(export_dir)
    assert len(requests) == 4 and requests[0].model_spec.signature_name == "serving_default"
    saved = saved_model_pb2.SavedModel.FromString(open(f"{export_dir}/saved_model.pb", "rb").read())
    signatures = saved.meta_graphs[0].signature_def
    assert signatures["serving_examples"].method_name == "tensorflow/serving/classify"
    assert signatures["serving_default"].inputs["images"].dtype == tf.string.as_datatype_enum


def test_exported_model_reloads_in_keras_with_its_backbone(trained):
    _, result, export_dir = trained
    reloaded = export.load_keras_model(export_dir)
    assert reloaded.get_layer("backbone").count_params() == result.model.get_layer("backbone").count_params()
    x = tf.random.uniform([2, 16, 16, 3], 0, 255)
    np.testing.assert_allclose(reloaded(x), result.model(x), atol=1e-5)
