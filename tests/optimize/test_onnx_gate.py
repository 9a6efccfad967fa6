"""The ONNX gate on a real drop: a model.onnx converted from a SavedModel whose weights were
perturbed scores lower than the float baseline through onnxruntime, so it is written and
reported but not blessed (and so not pushed)."""
import numpy as np

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core.config import OptimizeConfig
from visionpipe.optimize.optimizer import OptimizationInputs, optimize
from visionpipe.runtime import onnx_convert
from visionpipe.runtime.onnx_runtime import OnnxModel

from .conftest import IMAGE_SIZE, hooks_for, train_batches


def _export_perturbed(model, path, noise=1.5, seed=0):
    """``model`` with Gaussian noise (``noise`` x each kernel's std) on conv2, exported with a
    ``serving_tensor`` signature as the pipeline's exports have."""
    copy = tf.keras.models.clone_model(model)
    copy.set_weights(model.get_weights())
    kernel, bias = copy.get_layer("conv2").get_weights()
    rng = np.random.default_rng(seed)
    copy.get_layer("conv2").set_weights([kernel + rng.normal(0, noise * kernel.std(), kernel.shape)
                                         .astype(np.float32), bias])
    serving_tensor = tf.function(
        lambda pixels: {"probabilities": copy(pixels, training=False)},
        input_signature=[tf.TensorSpec([None, IMAGE_SIZE, IMAGE_SIZE, 3], tf.float32, name="pixels")])
    tf.saved_model.save(copy, str(path), signatures={"serving_tensor": serving_tensor.get_concrete_function()})
    return str(path)


def test_onnx_file_losing_more_than_max_onnx_drop_is_written_but_not_blessed(trained_cnn, digits,
                                                                             tmp_path):
    images, labels = digits["eval"]

    def onnx_accuracy(path):
        predicted = np.argmax(OnnxModel(path).predict(images)["probabilities"], axis=-1)
        return {"accuracy": float(np.mean(predicted == labels))}

    hooks = hooks_for(digits)
    hooks.convert_onnx = onnx_convert.convert_saved_model
    hooks.evaluate_onnx = onnx_accuracy
    config = OptimizeConfig(ptq_modes=[], onnx=True, max_onnx_drop=0.02, qat="off",
                            representative_samples=8, latency_runs=2)
    inputs = OptimizationInputs(
        model=trained_cnn, train_batches=train_batches(digits), calibration_images=images[:8],
        labels=[str(i) for i in range(10)],
        saved_model_dir=_export_perturbed(trained_cnn, tmp_path / "perturbed"))
    report = optimize(inputs, hooks, config, str(tmp_path / "optimized"))

    onnx, baseline = report.get("onnx"), report.get("float32")
    assert baseline.metric > 0.8  # the float baseline is the trained model
    assert baseline.metric - onnx.metric > config.max_onnx_drop  # a real, measured drop
    assert not onnx.blessed and "model.onnx" not in report.blessed_files
    assert (tmp_path / "optimized" / "model.onnx").is_file()
    assert "| onnx | model.onnx |" in report.to_markdown()
    assert "no (limit 0.020)" in report.to_markdown()
