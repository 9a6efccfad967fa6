import json

import numpy as np
import pytest

from visionpipe.optimize import quantization_repair
from visionpipe.runtime import tflite_convert
from visionpipe.optimize.optimizer import OptimizationInputs, optimize
from visionpipe.core.config import OptimizeConfig

from .conftest import hooks_for, keras_accuracy, train_batches

MAX_DROP = 0.01


def _config(**overrides):
    config = OptimizeConfig(enabled=True, ptq_modes=["int8"], max_int8_drop=MAX_DROP,
                            representative_samples=64, latency_runs=3, qat="off")
    for key, value in overrides.items():
        setattr(config, key, value)
    config.validate()
    return config


def _inputs(model, digits):
    return OptimizationInputs(model=model, train_batches=train_batches(digits),
                              calibration_images=digits["train"][0], labels=[str(i) for i in range(10)])


@pytest.fixture(scope="module")
def repaired_report(outlier_cnn, digits, tmp_path_factory):
    out = tmp_path_factory.mktemp("repaired")
    return optimize(_inputs(outlier_cnn, digits), hooks_for(digits), _config(), str(out)), out


def test_outlier_layer_ranks_worst_in_the_quantization_debugger(outlier_cnn, digits):
    import visionpipe  # noqa: F401
    import tensorflow as tf

    representative = tflite_convert.representative_dataset(digits["train"][0], 32)
    debugger = tf.lite.experimental.QuantizationDebugger(
        converter=tflite_convert.make_converter(outlier_cnn, "int8", representative),
        debug_dataset=representative, debug_options=quantization_repair._debug_options())
    debugger.run()
    ranking = quantization_repair.rank_layers(debugger)
    assert "outlier" in ranking[0].tensor_name
    assert ranking[0].relative_rmse > 0.5  # its real channels quantize to zero
    assert any("select" in name for name in ranking[0].consumers)


def test_repair_keeps_the_outlier_layer_in_float_and_restores_accuracy(repaired_report, outlier_cnn,
                                                                      digits):
    report, out = repaired_report
    baseline, int8 = report.get("float32"), report.get("int8")
    assert keras_accuracy(outlier_cnn, digits) > 0.7
    first_attempt = int8.notes["repair_attempts"][0]
    assert first_attempt["float_layers"] == [] and first_attempt["metric"] < 0.3  # collapsed
    assert any("outlier" in name for name in int8.notes["float_layers"])
    assert int8.notes["kept_in_float_because"][0]["tensor_name"].find("outlier") >= 0
    assert baseline.metric - int8.metric <= MAX_DROP
    assert int8.blessed and "model_int8.tflite" in report.blessed_files
    saved = json.loads((out / "report.json").read_text())
    assert saved["blessed_files"] == report.blessed_files
    assert "outlier" in (out / "report.md").read_text()


def test_repaired_int8_file_still_has_int8_input_and_output(repaired_report):
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    _, out = repaired_report
    model = TFLiteModel(str(out / "model_int8.tflite"))
    assert model.input_dtype == np.int8 and model.output_dtypes == [np.int8]


def test_without_repair_collapsed_int8_is_not_blessed_and_the_report_names_the_worst_layer(
        outlier_cnn, digits, tmp_path):
    report = optimize(_inputs(outlier_cnn, digits), hooks_for(digits), _config(repair_int8=False),
                      str(tmp_path))
    int8 = report.get("int8")
    assert not int8.blessed
    assert "model_int8.tflite" not in report.blessed_files
    assert int8.notes["float_layers"] == []
    assert "outlier" in int8.notes["worst_layers"][0]["tensor_name"]
    assert "not blessed" in (tmp_path / "report.md").read_text()


def test_failed_int8_falls_back_to_quantization_aware_training_when_configured(
        outlier_cnn, digits, tmp_path):
    report = optimize(_inputs(outlier_cnn, digits), hooks_for(digits),
                      _config(repair_int8=False, qat="fallback", qat_epochs=1), str(tmp_path))
    assert not report.get("int8").blessed
    qat = report.get("qat_int8")
    assert (tmp_path / "model_qat_int8.tflite").is_file()
    assert qat.blessed == (report.get("float32").metric - qat.metric <= MAX_DROP + 1e-9)
    assert ("model_qat_int8.tflite" in report.blessed_files) == qat.blessed


def test_blessed_int8_does_not_trigger_quantization_aware_training(trained_cnn, digits, tmp_path):
    report = optimize(_inputs(trained_cnn, digits), hooks_for(digits),
                      _config(qat="fallback"), str(tmp_path))
    assert report.get("int8").blessed
    assert "qat_int8" not in [a.name for a in report.artifacts]
