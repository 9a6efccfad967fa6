"""`visionpipe run ... optimize.enabled=true`: every artifact, the report, and the blessed TFLite
files pushed next to the SavedModel version."""
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from visionpipe.cli import pipeline_commands as commands
from visionpipe.core.config import load_config

pytestmark = pytest.mark.e2e

EXPECTED = {"float_savedmodel", "float32", "dynamic", "float16", "int8", "pruned", "student", "qat_int8"}


def test_optimize_stage_reports_every_artifact_and_pushes_the_blessed_tflite_files(tmp_path):
    config = load_config("configs/digits.yaml", [
        "name=opt_e2e", "data.num_images=400", "data.image_size=16", "model.image_size=16",
        "model.width=8", "train.epochs=6", "evaluate.thresholds={accuracy: 0.5}",
        "optimize.enabled=true", "optimize.prune=true", "optimize.prune_epochs=1",
        "optimize.distill=true", "optimize.distill_epochs=2", "optimize.student_width=4", "optimize.qat=always",
        "optimize.latency_runs=3", "optimize.max_int8_drop=0.05",
        f"runner.output_dir={tmp_path}/runs", f"push.serving_root={tmp_path}/serving"])
    _, summary = commands._run(config)
    assert summary["push"]["pushed"] is True
    report = json.loads(open(summary["optimization"]["report"]).read())
    by_name = {a["name"]: a for a in report["artifacts"]}
    assert EXPECTED <= set(by_name), sorted(by_name)
    for name in EXPECTED:
        assert by_name[name]["size_bytes"] > 0 and by_name[name]["gzip_bytes"] > 0
    assert by_name["int8"]["size_ratio"] < 0.35
    assert by_name["pruned"]["notes"]["overall_sparsity"] == pytest.approx(0.5, abs=0.02)
    assert by_name["student"]["notes"]["parameter_ratio"] <= 0.5

    version_dir = summary["push"]["path"]
    blessed = summary["optimization"]["blessed_files"]
    assert "model_float16.tflite" in blessed
    for name in blessed + ["report.json", "report.md"]:
        assert os.path.exists(os.path.join(version_dir, name)), name
    for artifact in report["artifacts"]:  # what failed its gate stays out of the serving dir
        if artifact["file"] and not artifact["blessed"]:
            assert not os.path.exists(os.path.join(version_dir, artifact["file"])), artifact["file"]
    assert "| " in summary["optimization"]["table"]  # the Markdown table is in the summary

    interpreter = tf.lite.Interpreter(model_path=os.path.join(version_dir, "model_float16.tflite"))
    assert interpreter.get_input_details()[0]["dtype"] == np.float32
    int8 = os.path.join(summary["optimization"]["report"].rsplit("/", 1)[0], "model_int8.tflite")
    interpreter = tf.lite.Interpreter(model_path=int8)
    assert interpreter.get_input_details()[0]["dtype"] == np.int8
    assert interpreter.get_output_details()[0]["dtype"] == np.int8
