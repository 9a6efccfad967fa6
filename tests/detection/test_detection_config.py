from pathlib import Path

import pytest

from visionpipe.core.config import ConfigError, load_config


@pytest.mark.parametrize("override, key", [
    ("detection.architecture=ssd", "detection.architecture"),
    ("detection.anchor_sizes=[8,16]", "detection.anchor_sizes"),
    ("detection.anchor_strides=[4,8,16,32,64]", "detection.anchor_strides"),
    ("detection.anchor_aspect_ratios=[0,1]", "detection.anchor_aspect_ratios"),
    ("detection.iou_threshold=0", "detection.iou_threshold"),
    ("detection.pre_nms_top_k=10", "detection.pre_nms_top_k"),
])
def test_bad_detection_setting_names_its_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["task=detection", override])


def test_shipped_detection_configs_load():
    for name in ("detection.yaml", "bccd_detection.yaml"):
        config = load_config(Path(__file__).resolve().parents[2] / "configs" / name)
        assert config.task == "detection" and config.evaluate.gate_metric == "map_50"


def test_yolov8_accepts_any_anchor_strides_since_it_has_no_anchors():
    config = load_config(None, ["task=detection", "detection.architecture=yolov8",
                                "detection.anchor_strides=[8,16,32]", "detection.anchor_sizes=[8,16,32]"])
    assert config.detection.architecture == "yolov8"


def test_detection_gate_metric_must_be_a_coco_metric():
    from visionpipe.tasks import get_task

    config = load_config(None, ["task=detection", "evaluate.gate_metric=map_50"])
    assert get_task(config, ["a"]).gate_metric == "map_50"
    with pytest.raises(ConfigError, match="evaluate.gate_metric: 'accuracy' is not a metric of "
                                          "task 'detection'"):
        load_config(None, ["task=detection", "evaluate.gate_metric=accuracy"])
