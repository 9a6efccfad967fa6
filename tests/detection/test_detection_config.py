from pathlib import Path

import pytest

from visionpipe.core.config import ConfigError, load_config


@pytest.mark.parametrize("override, key", [
    ("detection.architecture=detr", "detection.architecture"),
    ("detection.architecture=ssd detection.anchor_strides=[4,8,16,32,64]", "detection.anchor_strides"),
    ("detection.architecture=ssd detection.anchor_strides=[8,16,64,128,256]", "detection.anchor_strides"),
    ("detection.architecture=ssd detection.ssd_match_iou=1.0", "detection.ssd_match_iou"),
    ("detection.architecture=ssd detection.ssd_neg_pos_ratio=0", "detection.ssd_neg_pos_ratio"),
    ("detection.anchor_sizes=[8,16]", "detection.anchor_sizes"),
    ("detection.anchor_strides=[4,8,16,32,64]", "detection.anchor_strides"),
    ("detection.anchor_aspect_ratios=[0,1]", "detection.anchor_aspect_ratios"),
    ("detection.iou_threshold=0", "detection.iou_threshold"),
    ("detection.pre_nms_top_k=10", "detection.pre_nms_top_k"),
])
def test_bad_detection_setting_names_its_key(override, key):
    with pytest.raises(ConfigError, match=key):
        load_config(None, ["task=detection", *override.split()])


def test_shipped_detection_configs_load():
    for name in ("detection.yaml", "bccd_detection.yaml", "bccd_ssd.yaml"):
        config = load_config(Path(__file__).resolve().parents[2] / "configs" / name)
        assert config.task == "detection" and config.evaluate.gate_metric == "map_50"


def test_yolov8_accepts_any_anchor_strides_since_it_has_no_anchors():
    config = load_config(None, ["task=detection", "detection.architecture=yolov8",
                                "detection.anchor_strides=[8,16,32]", "detection.anchor_sizes=[8,16,32]"])
    assert config.detection.architecture == "yolov8"


def test_ssd_takes_strides_from_8_16_or_32_that_double_and_reach_past_the_backbone():
    config = load_config(None, ["task=detection", "detection.architecture=ssd",
                                "detection.anchor_strides=[16,32,64,128,256,512]",
                                "detection.anchor_sizes=[16,32,64,128,256,512]"])
    assert config.detection.anchor_strides == [16, 32, 64, 128, 256, 512]


def test_detection_gate_metric_must_be_a_coco_metric():
    from visionpipe.tasks import get_task

    config = load_config(None, ["task=detection", "evaluate.gate_metric=map_50"])
    assert get_task(config, ["a"]).gate_metric == "map_50"
    with pytest.raises(ConfigError, match="evaluate.gate_metric: 'accuracy' is not a metric of "
                                          "task 'detection'"):
        load_config(None, ["task=detection", "evaluate.gate_metric=accuracy"])
