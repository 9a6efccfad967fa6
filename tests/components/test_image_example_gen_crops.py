"""data.crop_objects: each object box of a detection source becomes a labelled image crop."""
import pytest

from visionpipe.core import features as F
from visionpipe.core.config import ConfigError, PipelineConfig
from visionpipe.components.image_example_gen import ingest

from .image_example_gen_helpers import folder_config, load_report, read_examples, write_voc


def test_voc_objects_become_labelled_crops_in_their_image_split_and_small_boxes_are_quarantined(tmp_path):
    objects = {f"img{i}": [("car", 2, 3, 20, 25), ("person", 25, 1, 39, 29), ("person", 30, 2, 34, 6)]
               for i in range(4)}
    root = write_voc(tmp_path / "voc", objects, {"train": ["img0", "img1", "img2"], "val": ["img3"]})
    config = folder_config(root, source="voc", use_source_splits=True, source_split_map={"val": "eval"},
                           crop_objects=True, crop_margin=0.1, crop_min_size=5, max_bad_fraction=0.4)

    result = ingest(config, str(tmp_path / "out"))

    assert result.counts_by_split == {"train": 6, "eval": 2}
    assert result.class_names == ["car", "person"]
    report = load_report(result.report_path)
    assert report["total_inputs"] == 4 + 12  # the images and each of their objects
    assert [(q["file"], q["kind"]) for q in report["quarantined"]] == [
        (f"JPEGImages/img{i}.jpg#object-2", "crop_too_small") for i in range(4)]
    assert "4x4 pixels is smaller than data.crop_min_size=5" in report["quarantined"][0]["reason"]
    crops = {e[F.FILENAME].decode(): e for e in read_examples(result.examples_uri, "eval")}
    assert sorted(crops) == ["JPEGImages/img3.jpg#object-0", "JPEGImages/img3.jpg#object-1"]
    car, person = crops["JPEGImages/img3.jpg#object-0"], crops["JPEGImages/img3.jpg#object-1"]
    assert car[F.LABEL_TEXT].tolist() == [b"car"] and car[F.LABEL].tolist() == [0]
    assert person[F.LABEL_TEXT].tolist() == [b"person"] and person[F.LABEL].tolist() == [1]
    # an 18x22 box widened by 10% a side (rounded out): x 0.2..21.8 -> 0..22, y 0.8..27.2 -> 0..28;
    # the 14x28 person box is clipped at the 40x30 image's edges
    assert (car[F.WIDTH], car[F.HEIGHT], car[F.FORMAT]) == (22, 28, b"png")
    assert (person[F.WIDTH], person[F.HEIGHT]) == (40 - 23, 30)
    assert F.BBOX_XMIN not in person or not person[F.BBOX_XMIN].size


def test_crop_objects_is_refused_for_a_source_without_boxes_and_a_task_without_image_labels(tmp_path):
    with pytest.raises(ConfigError, match="data.crop_objects"):
        folder_config(tmp_path, source="folder", crop_objects=True)
    config = PipelineConfig()
    config.task = "detection"
    config.data.source, config.data.path, config.data.crop_objects = "voc", str(tmp_path), True
    with pytest.raises(ConfigError, match="data.crop_objects.*task 'detection'"):
        config.validate()
