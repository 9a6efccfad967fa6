import io
import json

import numpy as np
import pytest
from PIL import Image

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.runtime import tflite_convert
from visionpipe.runtime.tflite_runtime import TFLiteModel, top1_accuracy

LABELS = [f"digit_{i}" for i in range(10)]


@pytest.fixture(scope="module")
def representative(digits):
    return tflite_convert.representative_dataset(digits["train"][0], 64)


@pytest.fixture(scope="module")
def tflite_files(tmp_path_factory, trained_cnn, representative):
    out = tmp_path_factory.mktemp("tflite")
    paths = {}
    for mode in tflite_convert.PTQ_MODES:
        model = tflite_convert.convert(trained_cnn, mode, representative)
        paths[mode] = tflite_convert.write(
            str(out / f"model_{mode}.tflite"), tflite_convert.add_metadata(model, LABELS,
                                                                     kind="image_classifier"))
    return paths


def test_int8_model_has_int8_input_and_output_tensors(tflite_files):
    model = TFLiteModel(tflite_files["int8"])
    assert model.input_dtype == np.int8
    assert model.output_dtypes == [np.int8]
    interpreter = tf.lite.Interpreter(model_path=tflite_files["int8"])
    scale, _ = interpreter.get_input_details()[0]["quantization"]
    assert scale > 0  # real quantization parameters, which the runtime applies


def test_float16_tflite_gives_keras_top1_on_at_least_99_percent_of_eval_images(
        tflite_files, trained_cnn, digits):
    images, _ = digits["eval"]
    keras_top1 = np.argmax(trained_cnn.predict(images, verbose=0), axis=-1)
    tflite_top1 = np.argmax(TFLiteModel(tflite_files["float16"]).scores(images), axis=-1)
    assert np.mean(keras_top1 == tflite_top1) >= 0.99


def _constant_dtypes(path):
    """dtypes of the tensors that hold weights (buffers with data), by kind of op using them."""
    interpreter = tf.lite.Interpreter(model_path=path)
    kernels = set()
    for op in interpreter._get_ops_details():  # noqa: SLF001
        if op["op_name"] in ("CONV_2D", "FULLY_CONNECTED"):
            kernels.add(int(op["inputs"][1]))
    details = {d["index"]: d for d in interpreter.get_tensor_details()}
    # float16 files keep fp16 weights that a DEQUANTIZE op turns into the float kernel.
    for op in interpreter._get_ops_details():  # noqa: SLF001
        if op["op_name"] == "DEQUANTIZE" and int(op["outputs"][0]) in kernels:
            kernels.add(int(op["inputs"][0]))
    return {np.dtype(details[i]["dtype"]).name for i in kernels}


def test_quantized_files_store_their_kernels_in_the_reduced_type(tflite_files):
    assert _constant_dtypes(tflite_files["float32"]) == {"float32"}
    assert "int8" in _constant_dtypes(tflite_files["dynamic"])
    assert _constant_dtypes(tflite_files["int8"]) == {"int8"}
    assert "float16" in _constant_dtypes(tflite_files["float16"])


def test_int8_tflite_keeps_keras_accuracy_within_two_points(tflite_files, trained_cnn, digits):
    images, labels = digits["eval"]
    keras_accuracy = np.mean(np.argmax(trained_cnn.predict(images, verbose=0), -1) == labels)
    int8_accuracy = top1_accuracy(TFLiteModel(tflite_files["int8"]), [(images, labels)])
    assert keras_accuracy > 0.7  # the model learned something worth quantizing
    assert int8_accuracy >= keras_accuracy - 0.02


def test_metadata_embeds_labels_and_zero_mean_unit_std_normalization(tflite_files):
    from tensorflow_lite_support.metadata.python import metadata

    for mode, path in tflite_files.items():
        assert TFLiteModel(path).labels() == LABELS, mode
        displayer = metadata.MetadataDisplayer.with_model_file(path)
        meta = json.loads(displayer.get_metadata_json())
        units = meta["subgraph_metadata"][0]["input_tensor_metadata"][0]["process_units"]
        assert units[0]["options"] == {"mean": [0.0], "std": [1.0]}, mode


def test_runtime_on_encoded_png_matches_runtime_on_preprocessed_pixels(tflite_files, digits):
    images, _ = digits["eval"]
    # Encode at 32x32 so the runtime's shared preprocessing has to resize down to 16x16.
    big = np.kron(images[:8, :, :, 0], np.ones((2, 2))).astype(np.uint8)
    encoded = []
    for pixels in big:
        buffer = io.BytesIO()
        Image.fromarray(pixels).convert("RGB").save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    model = TFLiteModel(tflite_files["float32"])
    from visionpipe.models.preprocessing import preprocess_image

    pixels = np.stack([preprocess_image(tf.constant(e), 16).numpy() for e in encoded])
    np.testing.assert_allclose(model.predict_encoded(encoded)["probabilities"] if
                               "probabilities" in model.output_names else
                               next(iter(model.predict_encoded(encoded).values())),
                               model.scores(pixels), rtol=1e-5, atol=1e-6)
    top = model.classify_encoded(encoded, top_k=2)
    assert len(top) == 8 and all(len(row) == 2 and row[0][0] in LABELS for row in top)


def test_runtime_rejects_images_of_the_wrong_size_naming_the_expected_shape(tflite_files):
    model = TFLiteModel(tflite_files["float32"])
    with pytest.raises(ValueError, match=r"\[N, 16, 16, 3\]"):
        model.predict(np.zeros((1, 32, 32, 3), np.float32))


def test_runtime_rejects_a_file_that_is_not_tflite_naming_it(tmp_path):
    path = tmp_path / "broken.tflite"
    path.write_bytes(b"not a flatbuffer")
    with pytest.raises(ValueError, match="broken.tflite"):
        TFLiteModel(str(path))


def test_int8_without_representative_data_is_refused(trained_cnn):
    with pytest.raises(ValueError, match="representative dataset"):
        tflite_convert.convert(trained_cnn, "int8")


def test_predict_files_gives_top_k_label_names_from_the_metadata(tflite_files, digits, tmp_path):
    from visionpipe.runtime.tflite_runtime import predict_files

    images, labels = digits["eval"]
    paths = []
    for i in range(3):
        path = tmp_path / f"digit{i}.png"
        Image.fromarray(images[i].astype(np.uint8)).save(path)
        paths.append(str(path))
    results = predict_files(tflite_files["int8"], paths, top_k=2)
    assert [len(r["top_k_names"]) for r in results] == [2, 2, 2]
    assert all(name in LABELS for r in results for name in r["top_k_names"])
    model = TFLiteModel(tflite_files["int8"])
    expected = np.argmax(model.scores(images[:3]), axis=-1)
    assert [r["top_k_names"][0] for r in results] == [LABELS[i] for i in expected]


def test_predict_files_names_an_undecodable_image(tflite_files, tmp_path):
    from visionpipe.runtime.tflite_runtime import predict_files

    bad = tmp_path / "notes.png"
    bad.write_text("not an image")
    with pytest.raises(ValueError, match="notes.png"):
        predict_files(tflite_files["float32"], [str(bad)])
