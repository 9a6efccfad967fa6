import json

import numpy as np
import yaml

from visionpipe.cli.main import main
from visionpipe.core.config import load_config


def _coco(tmp_path, shapes_px, image_px=(200, 100)):
    """A COCO file (no images needed: sizes are declared) with one box per (w, h)."""
    width, height = image_px
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1, "bbox": [0, 0, w, h],
                             "area": w * h, "iscrowd": 0} for i, (w, h) in enumerate(shapes_px)],
            "categories": [{"id": 1, "name": "cell"}]}
    path = tmp_path / "ann.json"
    path.write_text(json.dumps(coco))
    return path


def test_anchors_command_reports_and_writes_a_config_that_adopts_the_fit(tmp_path, capsys):
    rng = np.random.default_rng(0)
    # 200x100 image resized to 64x64: a 50x25 px box becomes 16x16 model pixels.
    shapes = np.concatenate([rng.uniform(45, 55, (40, 1)) * [1, 0.5] + [0, 0],
                             rng.uniform(140, 160, (40, 1)) * [1, 0.5]])
    path = _coco(tmp_path, shapes.tolist() + [[10.0, 0.0]])  # plus one zero-area box
    config_path = tmp_path / "det.yaml"
    config_path.write_text(yaml.safe_dump({
        "task": "detection", "data": {"source": "coco", "path": str(path)},
        "model": {"image_size": 64},
        "detection": {"anchor_sizes": [100.0, 200.0, 300.0, 400.0, 500.0], "anchor_scales": [1.0],
                      "anchor_aspect_ratios": [1.0]}}))
    out = tmp_path / "adopted.yaml"
    assert main(["anchors", "--config", str(config_path), "--json", "--write-config", str(out)]) == 0
    printed = capsys.readouterr().out
    report = json.loads(printed[:printed.rindex("}") + 1])
    assert report["num_boxes"] == 80 and report["zero_area_boxes_skipped"] == 1
    assert report["configured"]["best_possible_recall"] == 0.0
    assert report["adopted"]["best_possible_recall"] == 1.0
    adopted = load_config(out)
    assert adopted.detection.anchor_sizes == report["adopted"]["sizes"]
    assert 14 < min(adopted.detection.anchor_sizes) < 18 and 44 < max(adopted.detection.anchor_sizes) < 52


def test_anchors_command_refuses_an_anchor_free_detector(tmp_path, capsys):
    config_path = tmp_path / "det.yaml"
    config_path.write_text(yaml.safe_dump({"task": "detection", "detection": {"architecture": "yolov8"},
                                           "data": {"source": "coco", "path": "x.json"}}))
    assert main(["anchors", "--config", str(config_path)]) == 2
    assert "anchor-free" in capsys.readouterr().err


def test_anchors_command_refuses_to_write_a_fit_that_lowers_the_grid_recall_unless_forced(tmp_path, capsys):
    from tests.detection.test_anchors import _coco_like_boxes

    boxes = _coco_like_boxes()  # yxyx in a 256x256 image, which is also the model input
    coco = {"images": [{"id": 1, "file_name": "a.png", "width": 256, "height": 256}],
            "annotations": [{"id": i + 1, "image_id": 1, "category_id": 1,
                             "bbox": [x0, y0, x1 - x0, y1 - y0]}
                            for i, (y0, x0, y1, x1) in enumerate(boxes.tolist())],
            "categories": [{"id": 1, "name": "thing"}]}
    (tmp_path / "ann.json").write_text(json.dumps(coco))
    config_path = tmp_path / "det.yaml"
    config_path.write_text(yaml.safe_dump({
        "task": "detection", "data": {"source": "coco", "path": str(tmp_path / "ann.json")},
        "model": {"image_size": 256},
        "detection": {"anchor_sizes": [16.0, 32.0, 64.0, 128.0, 256.0]}}))
    out = tmp_path / "adopted.yaml"

    assert main(["anchors", "--config", str(config_path), "--write-config", str(out)]) == 1
    captured = capsys.readouterr()
    assert not out.exists()
    assert f"not writing {out}: keep the configured anchors: the fit's grid BPR" in captured.err
    assert "--force" in captured.err
    assert "=> keep the configured anchors" in captured.out
    assert "warning: adopted anchors smaller than their level's stride:" in captured.out

    assert main(["anchors", "--config", str(config_path), "--write-config", str(out), "--force"]) == 0
    assert "(--force: keep the configured anchors" in capsys.readouterr().out
    assert load_config(out).detection.anchor_sizes != [16.0, 32.0, 64.0, 128.0, 256.0]
