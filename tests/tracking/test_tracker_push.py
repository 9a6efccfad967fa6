"""A detector's export carries its ``tracking`` config as ``assets.extra/visionpipe_tracker.json``
(so the Pusher ships it in the version folder) and `visionpipe track` runs with it."""
from __future__ import annotations

import pytest

from visionpipe.core.config import load_config
from visionpipe.core.errors import ConfigError
from visionpipe.tracking import TRACKER_FILE, TrackerConfig


def _config(*overrides):
    return load_config(overrides=[
        "task=detection", "model.image_size=32", "model.width=4", "detection.fpn_channels=8",
        "detection.head_conv_layers=1", "detection.max_detections=5",
        "detection.pre_nms_top_k=50", *overrides])


def test_detection_task_export_files_hold_the_tracking_section(tmp_path):
    import json

    from visionpipe.cli.track import resolve_tracker_config
    from visionpipe.tasks import get_task

    config = _config("tracking.tracker=deepsort", "tracking.gallery_min_score=0.7")
    files = get_task(config, ["circle"]).export_files()
    assert list(files) == [f"assets.extra/{TRACKER_FILE}"]
    assert TrackerConfig.from_dict(json.loads(files[f"assets.extra/{TRACKER_FILE}"])) == \
        TrackerConfig(tracker="deepsort", gallery_min_score=0.7)
    (tmp_path / "assets.extra").mkdir()
    (tmp_path / "assets.extra" / TRACKER_FILE).write_text(files[f"assets.extra/{TRACKER_FILE}"])
    assert resolve_tracker_config(str(tmp_path))[0].tracker == "deepsort"


@pytest.mark.e2e
def test_detector_export_ships_its_tracker_config_and_track_uses_it(tmp_path):
    from visionpipe.cli.track import resolve_tracker_config
    from visionpipe.models.export import export_saved_model
    from visionpipe.tasks import get_task

    config = _config("tracking.tracker=sort", "tracking.max_age=7", "tracking.min_hits=2")
    task = get_task(config, ["circle", "square"])
    export = export_saved_model(task.build_model(), task, str(tmp_path / "1"))
    pushed = tmp_path / "1" / "assets.extra" / TRACKER_FILE
    shipped = TrackerConfig.read(pushed)
    assert shipped == config.tracking and (shipped.tracker, shipped.max_age) == ("sort", 7)
    resolved, source = resolve_tracker_config(export)
    assert resolved == shipped and source == str(pushed)
    # --tracker still overrides the pushed choice, keeping its other parameters
    resolved, _ = resolve_tracker_config(export, tracker="bytetrack")
    assert (resolved.tracker, resolved.max_age, resolved.min_hits) == ("bytetrack", 7, 2)


@pytest.mark.parametrize("override, key", [("tracking.tracker=botsort", "tracking.tracker"),
                                           ("tracking.low_score=0.9", "tracking.low_score")])
def test_a_bad_tracking_key_is_a_config_error_naming_it(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        _config(override)
