"""Mask sources for segmentation: Pascal VOC's SegmentationClass palette PNGs (void 255 ->
the task's ignore value), COCO outlines painted into one class map, a CSV ``mask_path``
column, and the pixel share per class in the ingest report and the run summary."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from visionpipe.core import features as F
from visionpipe.core.config import ConfigError, PipelineConfig

from tests.components.image_example_gen_helpers import load_report, read_examples

PERSON, CAT = 15, 8  # VOC palette indices


def _config(source, path, **overrides):
    config = PipelineConfig()
    config.task = "segmentation"
    config.model.image_size = 32
    config.data.source, config.data.path = source, str(path)
    config.data.max_bad_fraction = 0.6
    config.data.min_examples_per_class = 0
    for key, value in overrides.items():
        section, name = key.split("__")
        setattr(getattr(config, section), name, value)
    return config.validate()


def _jpeg(path, height=16, width=20):
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(sum(map(ord, path.name)))  # distinct files: no duplicates
    Image.fromarray(rng.integers(0, 255, (height, width, 3)).astype(np.uint8)).save(path)


def _palette_png(path, ids):
    """A VOC-style palette PNG: the stored pixel is the palette index (= class id)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.fromarray(ids.astype(np.uint8), mode="P")
    palette = np.zeros((256, 3), np.uint8)
    palette[PERSON], palette[CAT], palette[255] = (192, 128, 128), (64, 0, 0), (224, 224, 192)
    image.putpalette(palette.ravel().tolist())
    image.save(path)


def _voc_mask(label):
    ids = np.zeros((16, 20), np.uint8)
    ids[4:12, 5:15] = label
    ids[3, 4:16] = 255  # the void band along the outline
    return ids


def _voc_folder(root):
    for image_id, label in (("2007_a", PERSON), ("2007_b", CAT)):
        _jpeg(root / "JPEGImages" / f"{image_id}.jpg")
        _palette_png(root / "SegmentationClass" / f"{image_id}.png", _voc_mask(label))
    _jpeg(root / "JPEGImages" / "2007_nomask.jpg")
    sets = root / "ImageSets" / "Segmentation"
    sets.mkdir(parents=True)
    (sets / "train.txt").write_text("2007_a\n2007_nomask\n2007_noimage\n")
    (sets / "val.txt").write_text("2007_b\n")
    (sets / "trainval.txt").write_text("2007_a\n2007_b\n2007_nomask\n2007_noimage\n")


def _mask_of(example):
    return np.asarray(Image.open(io.BytesIO(example[F.SEGMENTATION_MASK])))


def test_voc_segmentation_class_pngs_become_class_maps_keeping_void_as_ignore_and_missing_files_are_quarantined_by_name(tmp_path):
    from visionpipe.components.image_example_gen import ingest
    from visionpipe.components.image_example_gen.sources import VOC_CLASSES

    _voc_folder(tmp_path / "voc")
    config = _config("voc", tmp_path / "voc", data__use_source_splits=True,
                     data__source_split_map={"val": "eval"})
    result = ingest(config, str(tmp_path / "out"))

    assert result.class_names == list(VOC_CLASSES) and len(VOC_CLASSES) == 21
    assert result.counts_by_split == {"train": 1, "eval": 1}
    (train,), (held_out,) = (read_examples(result.examples_uri, s) for s in ("train", "eval"))
    for example, label in ((train, PERSON), (held_out, CAT)):
        np.testing.assert_array_equal(_mask_of(example), _voc_mask(label))  # palette index = id
        assert sorted(t.decode() for t in example[F.LABEL_TEXT]) == sorted(
            ["background", VOC_CLASSES[label]])
    report = load_report(result.report_path)
    reasons = {q["file"]: (q["kind"], q["reason"]) for q in report["quarantined"]}
    assert reasons == {
        "JPEGImages/2007_nomask.jpg": ("bad_mask", "listed in ImageSets/Segmentation/train.txt but "
                                                   "its mask SegmentationClass/2007_nomask.png is missing"),
        "JPEGImages/2007_noimage.jpg": ("missing_file", "listed in ImageSets/Segmentation/train.txt "
                                                        "but JPEGImages/2007_noimage.* is missing")}
    # statistics: each class's share of the labelled pixels, the void band counted apart
    assert report["ignored_pixels"] == {"eval": 12, "train": 12}
    shares = report["pixel_share_by_class"]["train"]
    assert shares["person"] == pytest.approx(80 / (320 - 12))
    assert shares["background"] == pytest.approx(1 - 80 / (320 - 12)) and shares["cat"] == 0.0


def test_voc_void_is_written_as_the_tasks_ignore_index_and_adds_nothing_to_loss_or_miou(tmp_path):
    from visionpipe.components.image_example_gen import items as it
    from visionpipe.components.image_example_gen.sources import VOC_CLASSES, make_source
    from visionpipe.components.image_example_gen.validation import ImageRules, validate_item
    from visionpipe.tasks.segmentation import evaluation, losses

    _voc_folder(tmp_path / "voc")
    config = _config("voc", tmp_path / "voc", segmentation__ignore_index=200)
    source = make_source(config.data, semantic_masks=True)
    listed = {i.filename: i for i in source.items}
    result = validate_item(listed["JPEGImages/2007_a.jpg"], source.class_names, ImageRules.from_config(config))
    assert isinstance(result, it.ValidImage)
    truth = np.asarray(Image.open(io.BytesIO(result.segmentation_mask)))
    assert (truth[3, 4:16] == 200).all() and 255 not in truth
    assert sorted(result.labels) == ["background", "person"]

    # whatever is predicted on the void band, loss and confusion do not move
    right = np.eye(len(VOC_CLASSES), dtype=np.float32)[np.where(truth == 200, 0, truth)]
    wrong = right.copy()
    wrong[3, 4:16] = np.eye(len(VOC_CLASSES))[CAT]
    loss = [float(losses.cross_entropy(truth[None], p[None], len(VOC_CLASSES), ignore_index=200))
            for p in (right, wrong)]
    assert loss[0] == pytest.approx(loss[1])
    matrices = [evaluation.confusion(truth, p.argmax(-1), len(VOC_CLASSES), ignore_index=200)
                for p in (right, wrong)]
    np.testing.assert_array_equal(matrices[0], matrices[1])
    assert matrices[0].sum() == truth.size - 12


def test_a_voc_folder_without_segmentation_sets_is_a_config_error_naming_the_folder(tmp_path):
    from visionpipe.components.image_example_gen.sources import make_source

    _voc_folder(tmp_path / "voc")
    for name in ("train", "val", "trainval"):
        (tmp_path / "voc" / "ImageSets" / "Segmentation" / f"{name}.txt").unlink()
    with pytest.raises(ConfigError, match="ImageSets/Segmentation lists no image id"):
        make_source(_config("voc", tmp_path / "voc").data, semantic_masks=True)


def _uncompressed_rle(bitmap):
    """COCO's uncompressed RLE (what iscrowd objects carry): run lengths in column order,
    starting with a run of 0s."""
    flat = bitmap.ravel(order="F").astype(np.uint8)
    edges = np.flatnonzero(np.diff(np.concatenate([[0], flat, [1 - flat[-1]]])))
    return {"size": list(bitmap.shape), "counts": np.diff(np.concatenate([[0], edges])).tolist()}


def test_coco_polygons_and_crowd_rle_are_painted_into_one_class_map_small_objects_on_top(tmp_path):
    from visionpipe.components.image_example_gen import ingest

    height, width = 24, 32
    for name in ("scene.jpg", "empty.jpg", "boxonly.jpg"):
        _jpeg(tmp_path / name, height, width)
    crowd = np.zeros((height, width), bool)
    crowd[8:12, 10:14] = True  # a small crowd of dogs on top of the large cat
    coco = {
        "images": [{"id": 1, "file_name": "scene.jpg", "width": width, "height": height},
                   {"id": 2, "file_name": "empty.jpg", "width": width, "height": height},
                   {"id": 3, "file_name": "boxonly.jpg", "width": width, "height": height}],
        "categories": [{"id": 7, "name": "dog"}, {"id": 3, "name": "cat"}],
        "annotations": [
            {"id": 10, "image_id": 1, "category_id": 7, "iscrowd": 1, "bbox": [10, 8, 4, 4],
             "segmentation": _uncompressed_rle(crowd)},
            {"id": 11, "image_id": 1, "category_id": 3, "iscrowd": 0, "bbox": [4, 4, 20, 16],
             "segmentation": [[4, 4, 24, 4, 24, 20, 4, 20]]},
            {"id": 12, "image_id": 3, "category_id": 3, "bbox": [1, 1, 5, 5]}]}
    (tmp_path / "instances.json").write_text(json.dumps(coco))
    config = _config("coco", tmp_path / "instances.json",
                     data__split_ratios={"train": 0.5, "eval": 0.5})
    result = ingest(config, str(tmp_path / "out"))

    assert result.class_names == ["background", "cat", "dog"]  # categories by id after background
    masks = {e[F.FILENAME].decode(): _mask_of(e)
             for s in result.counts_by_split for e in read_examples(result.examples_uri, s)}
    assert set(masks) == {"scene.jpg", "empty.jpg"}
    assert (masks["empty.jpg"] == 0).all()
    scene = masks["scene.jpg"]
    assert (scene[8:12, 10:14] == 2).all()  # the dog stays visible inside the cat
    cat = np.zeros((height, width), bool)
    cat[4:20, 4:24] = True
    cat[8:12, 10:14] = False
    assert (scene[cat] == 1).all()
    assert (scene[~np.pad(np.ones((16, 20), bool), ((4, 4), (4, 8)))] == 0).all()
    (bad,) = load_report(result.report_path)["quarantined"]
    assert bad["file"] == "boxonly.jpg" and bad["kind"] == "bad_mask"
    assert "object 0 ('cat') has no segmentation" in bad["reason"]


def test_coco_class_names_without_background_are_refused_for_a_class_map(tmp_path):
    from visionpipe.components.image_example_gen.sources import make_source

    (tmp_path / "instances.json").write_text(json.dumps(
        {"images": [], "annotations": [], "categories": [{"id": 1, "name": "cat"}]}))
    config = _config("coco", tmp_path / "instances.json", data__class_names=["cat", "dog"])
    with pytest.raises(ConfigError, match="data.class_names: .* needs a 'background' class"):
        make_source(config.data, semantic_masks=True)


def test_a_csv_mask_path_column_gives_the_mask_and_two_mask_columns_are_refused(tmp_path):
    from visionpipe.components.image_example_gen.sources import make_source

    (tmp_path / "list.csv").write_text("path,label,mask_path\nimgs/a.jpg,,masks/a.png\n")
    config = _config("csv", tmp_path / "list.csv", data__class_names=["background", "cat"])
    (item,) = make_source(config.data, semantic_masks=True).items
    assert item.mask_path == str(tmp_path / "masks" / "a.png")

    (tmp_path / "list.csv").write_text("path,label,mask,mask_path\nimgs/a.jpg,,m/a.png,m/a.png\n")
    with pytest.raises(ConfigError, match=r"list.csv: has both mask columns \['mask', 'mask_path'\]"):
        make_source(config.data)


def test_the_run_summary_prints_the_pixel_share_per_class(tmp_path):
    from visionpipe.pipeline.summary import format_summary

    summary = {"pipeline": "p", "task": "segmentation",
               "data": {"splits": {"train": 2}, "pixel_share_by_class": {
                   "train": {"background": 0.75, "person": 0.25, "cat": 0.0}}}}
    line = next(l for l in format_summary(summary).splitlines() if "pixel share" in l)
    assert "pixel share (train)" in line and "background 75.0%, person 25.0%" in line
    assert "cat" not in line
