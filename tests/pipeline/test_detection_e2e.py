"""Detection through the whole pipeline: COCO source, pycocotools gate, push, served boxes,
`visionpipe predict` drawing, occlusion robustness in the summary."""
import json
from pathlib import Path

import pytest

from visionpipe.cli import pipeline_commands as commands
from visionpipe.cli.main import main
from visionpipe.core.config import load_config

pytestmark = pytest.mark.e2e


def _config(tmp_path, *overrides):
    return load_config("configs/detection.yaml", [
        "name=det_e2e", "data.num_images=160", "train.epochs=12", "train.steps_per_epoch=50",
        "evaluate.thresholds={map_50: 0.15}", f"runner.output_dir={tmp_path}/runs",
        f"push.serving_root={tmp_path}/serving", *overrides])


@pytest.fixture(scope="module")
def det_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("det")
    first = commands._run(_config(tmp_path))[1]
    untrained = commands._run(_config(tmp_path, "train.epochs=0"))[1]
    return tmp_path, first, untrained


def test_detector_is_gated_on_coco_map_pushed_and_predict_draws_its_boxes(det_runs, capsys):
    tmp_path, summary, _ = det_runs
    config = _config(tmp_path)
    evaluation = summary["evaluation"]
    assert {"map", "map_50", "map_75", "recall"} <= set(evaluation["metrics"])
    assert evaluation["metrics"]["map_50"] >= 0.15, evaluation
    assert evaluation["blessed"] is True and summary["push"]["pushed"] is True
    robustness = evaluation["details"]["occlusion"]
    assert {"occluded_0/map_50", "occluded_25/map_50", "occluded_50/map_50"} <= set(robustness)
    assert robustness["occluded_50/map_50"] <= robustness["occluded_0/map_50"] + 0.05

    image = sorted((tmp_path / "runs").rglob("images/*.png"))[0]
    out_dir = tmp_path / "drawn"
    assert main(["predict", "--model", summary["push"]["path"], str(image), "--json",
                 "--output_dir", str(out_dir), "--min_score", "0.05"]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert Path(row["drawn"]).exists() and row["detections"]
    first = row["detections"][0]
    assert first["class"] in config.data.class_names or first["class"] in (
        "circle", "cross", "square", "star", "triangle")
    assert all(0.0 <= v <= 1.0 for v in first["box"])


def test_an_untrained_second_detector_is_refused_against_the_blessed_first(det_runs):
    _, first, untrained = det_runs
    evaluation = untrained["evaluation"]
    assert evaluation["baseline"]["map_50"] == first["evaluation"]["metrics"]["map_50"]
    assert evaluation["trivial"]["map_50"] == 0.0  # the detector that finds nothing
    assert evaluation["blessed"] is False and untrained["push"]["pushed"] is False
    assert any("dropped more than" in failure for failure in evaluation["failures"])


def test_ssd_is_gated_pushed_with_its_tflite_files_and_the_pushed_model_answers(tmp_path):
    """SSD-on-small_cnn through the whole pipeline, a few short epochs: blessed on mAP@.5,
    pushed with float32/int8 TFLite (NMS inside), and the pushed SavedModel finds objects."""
    import numpy as np
    import tensorflow as tf

    from visionpipe.tasks.detection import evaluation as det_eval

    config = _config(tmp_path, "name=ssd_e2e", "detection.architecture=ssd", "data.num_images=96",
                     "train.epochs=5", "train.steps_per_epoch=25", "evaluate.thresholds={map_50: 0.08}",
                     "optimize.enabled=true", "optimize.ptq_modes=[int8]", "optimize.latency_runs=2",
                     "optimize.representative_samples=16", "optimize.max_int8_drop=0.5")
    summary = commands._run(config)[1]
    evaluation = summary["evaluation"]
    assert evaluation["metrics"]["map_50"] >= 0.08 > evaluation["trivial"]["map_50"], evaluation
    assert evaluation["blessed"] is True and summary["push"]["pushed"] is True
    version_dir = Path(summary["push"]["path"])
    assert "model_int8.tflite" in summary["optimization"]["blessed_files"]
    assert (version_dir / "model_int8.tflite").exists()

    served = tf.saved_model.load(str(version_dir))
    images = sorted((tmp_path / "runs").rglob("images/*.png"))[:4]
    out = {k: v.numpy() for k, v in served.signatures["serving_default"](
        images=tf.constant([p.read_bytes() for p in images])).items()}
    assert (out["num_detections"] > 0).all()
    names = set(out["detection_class_names"][0, :int(out["num_detections"][0])])
    assert names <= {n.encode() for n in config.data.class_names or
                     ("circle", "cross", "square", "star", "triangle")}

    pixels = np.stack([tf.image.resize(tf.io.decode_png(p.read_bytes(), 3), (64, 64)).numpy()
                       for p in images[:2]])
    lite = det_eval.tflite_predict_fn(str(version_dir / "model_int8.tflite"))(pixels)
    assert lite["detection_boxes"].shape == (2, config.detection.max_detections, 4)
    assert (lite["num_detections"] > 0).all()
