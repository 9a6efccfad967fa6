"""Segmentation through the whole pipeline on generated shapes (32 px): ingestion of the
images + masks CSV, training, the Evaluator's mIoU gate, push, and `visionpipe predict`."""
import json

import numpy as np
import pytest
from PIL import Image

from visionpipe.cli import pipeline_commands as commands
from visionpipe.core.config import load_config


def _config(tmp_path, *overrides):
    return load_config("configs/segmentation.yaml", [
        "name=seg_e2e", "data.num_images=100", "data.image_size=32", "model.image_size=32",
        "data.class_names=[background, circle, square]", "segmentation.depth=3",
        "segmentation.width=8", "train.epochs=6", "train.batch_size=8",
        "train.learning_rate=0.01", "evaluate.thresholds={miou: 0.3}",
        f"runner.output_dir={tmp_path}/runs", f"push.serving_root={tmp_path}/serving", *overrides])


@pytest.fixture(scope="session")
def seg_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("seg")
    return tmp_path, commands._run(_config(tmp_path))[1]


@pytest.mark.e2e
def test_trained_segmenter_is_blessed_on_miou_pushed_and_predict_gives_the_served_class_map(seg_run):
    from visionpipe.cli.main import main

    tmp_path, result = seg_run
    evaluation = result["evaluation"]
    assert evaluation["blessed"] is True, evaluation["failures"]
    assert evaluation["metrics"]["miou"] >= 0.3
    assert evaluation["metrics"]["miou"] > evaluation["trivial"]["miou"]
    assert result["push"]["pushed"] is True
    image_path = sorted((tmp_path / "runs" / "seg_e2e").rglob("images/00000.png"))[0]
    served = commands.predict_saved_model(result["push"]["path"], [image_path.read_bytes()])
    h, w = served["image_shape"][0]
    served_map = served["class_map"][0][:h, :w]
    out_dir = tmp_path / "predicted"
    assert main(["predict", "--model", result["push"]["path"], "--output_dir", str(out_dir),
                 "--json", str(image_path)]) == 0
    predicted = np.asarray(Image.open(out_dir / "00000.class_map.png"))
    np.testing.assert_array_equal(predicted, served_map)
    assert (out_dir / "00000.segmentation.png").exists()
