"""Detection through the whole pipeline: COCO source, pycocotools gate, push, served boxes,
`visionpipe predict` drawing, occlusion robustness in the summary."""
import json
from pathlib import Path

import pytest

from visionpipe.cli import pipeline_commands as commands
from visionpipe.cli.main import main
from visionpipe.core.config import load_config

pytestmark = pytest.mark.e2e


def test_detector_is_gated_on_coco_map_pushed_and_predict_draws_its_boxes(tmp_path, capsys):
    overrides = ["name=det_e2e", "data.num_images=160", "train.epochs=12", "train.steps_per_epoch=50",
                 "evaluate.thresholds={map_50: 0.15}",
                 f"runner.output_dir={tmp_path}/runs", f"push.serving_root={tmp_path}/serving"]
    config = load_config("configs/detection.yaml", overrides)
    _, summary = commands._run(config)
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
