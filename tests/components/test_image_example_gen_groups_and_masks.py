"""Ingestion carries a group key (video / patient / sequence id) and splits by it, and writes a
semantic mask (PNG of class ids) per image when the source provides one."""
import io
import json

import numpy as np
import pytest
from PIL import Image

from visionpipe.components.image_example_gen import ingest
from visionpipe.components.image_example_gen.splitting import group_hash, split_by_ratio
from visionpipe.core import features as F
from visionpipe.core.config import ConfigError

from .image_example_gen_helpers import (folder_config, load_report, read_examples, write_image)

RATIOS = {"train": 0.5, "eval": 0.5}


def _groups_by_split(result):
    groups = {}
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            groups.setdefault(example[F.GROUP_ID].decode(), set()).add(split)
    return groups


def test_csv_split_by_group_puts_every_group_in_one_split_and_quarantines_an_image_without_one(tmp_path):
    rows = ["path,label,group"]
    seed = 0
    for group in range(12):
        for frame in range(4):
            write_image(tmp_path / "frames" / f"v{group}_{frame}.png", seed)
            rows.append(f"frames/v{group}_{frame}.png,{'cat' if group % 2 else 'dog'},video-{group}")
            seed += 1
    write_image(tmp_path / "frames" / "loose.png", seed)
    rows.append("frames/loose.png,cat,")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = folder_config(tmp_path / "labels.csv", source="csv", split_by="group",
                           split_ratios=RATIOS, max_bad_fraction=0.1)

    result = ingest(config, str(tmp_path / "out"))

    assert sum(result.counts_by_split.values()) == 48 and min(result.counts_by_split.values()) > 0
    groups = _groups_by_split(result)
    assert len(groups) == 12
    assert all(len(splits) == 1 for splits in groups.values()), groups  # no group straddles splits
    ratios = list(RATIOS.items())
    assert all(splits == {split_by_ratio(group_hash(g), ratios)} for g, splits in groups.items())
    report = load_report(result.report_path)
    assert report["counts_by_reason"] == {"missing_group": 1}
    (entry,) = report["quarantined"]
    assert entry["file"] == "frames/loose.png" and "no group id" in entry["reason"]


def test_hash_splits_spread_a_group_and_still_record_its_id(tmp_path):
    rows = ["path,label,video"]
    for i in range(16):
        write_image(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{'a' if i % 2 else 'b'},only-one")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = folder_config(tmp_path / "labels.csv", source="csv", group_key="video", split_ratios=RATIOS)

    result = ingest(config, str(tmp_path / "out"))

    assert _groups_by_split(result) == {"only-one": {"train", "eval"}}  # split_by: hash


def test_folder_group_level_reads_class_group_image_and_splits_by_group(tmp_path):
    seed = 0
    for label in ("cat", "dog"):
        for video in range(6):
            for frame in range(3):
                write_image(tmp_path / "data" / label / f"{label}{video}" / f"{frame}.png", seed)
                seed += 1
    config = folder_config(tmp_path / "data", group_path_level=1, split_by="group", split_ratios=RATIOS)

    result = ingest(config, str(tmp_path / "out"))

    assert result.class_names == ["cat", "dog"] and result.quarantined == 0
    assert sum(result.counts_by_split.values()) == 36
    groups = _groups_by_split(result)
    assert len(groups) == 12 and all(len(s) == 1 for s in groups.values())
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            label, video, _ = example[F.FILENAME].decode().split("/")
            assert example[F.LABEL_TEXT].tolist() == [label.encode()]
            assert example[F.GROUP_ID].decode() == video


def test_coco_group_comes_from_an_image_field(tmp_path):
    images = []
    for i in range(6):
        write_image(tmp_path / f"{i}.png", i, (40, 30))
        images.append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30, "video_id": i // 2})
    coco = {"images": images, "categories": [{"id": 1, "name": "ant"}],
            "annotations": [{"id": i, "image_id": i, "category_id": 1, "bbox": [1, 1, 10, 10]}
                            for i in range(6)]}
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    config = folder_config(tmp_path / "coco.json", source="coco", split_by="group", split_ratios=RATIOS)

    result = ingest(config, str(tmp_path / "out"))

    groups = _groups_by_split(result)
    assert set(groups) == {"0", "1", "2"} and all(len(s) == 1 for s in groups.values())
    with pytest.raises(ConfigError, match="data.group_key: no image of .*coco.json has the field 'patient'"):
        ingest(folder_config(tmp_path / "coco.json", source="coco", group_key="patient"),
               str(tmp_path / "out2"))


def test_group_settings_are_checked_naming_the_key(tmp_path):
    with pytest.raises(ConfigError, match="data.split_by: must be one of"):
        folder_config(tmp_path, split_by="video")
    with pytest.raises(ConfigError, match="data.split_by: 'group' .* cannot be combined with data.use_source_splits"):
        folder_config(tmp_path, source="csv", split_by="group", use_source_splits=True)
    with pytest.raises(ConfigError, match="data.split_by: 'group' needs group ids"):
        folder_config(tmp_path, source="voc", split_by="group")
    with pytest.raises(ConfigError, match="data.group_path_level: data.split_by 'group' on a folder"):
        folder_config(tmp_path, split_by="group")
    with pytest.raises(ConfigError, match="data.group_path_level: applies to source 'folder'"):
        folder_config(tmp_path, source="csv", group_path_level=1)
    with pytest.raises(ConfigError, match="data.group_key: .*folders: data.group_path_level"):
        folder_config(tmp_path, group_key="video")


def _png(array: np.ndarray, mode=None, palette=False, fmt="PNG") -> bytes:
    image = Image.fromarray(array, mode=mode)
    if palette:
        image = image.convert("P")  # indices = the grey values, a palette of colours
        image.putpalette([v for i in range(256) for v in ((i * 40) % 256, (i * 90) % 256, 255 - i)])
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def test_csv_masks_become_the_segmentation_feature_and_bad_masks_are_quarantined_by_name(tmp_path):
    width, height = 40, 30
    ids = np.zeros((height, width), np.uint8)
    ids[5:20, 8:30], ids[22:, :10] = 2, 255  # a class and an ignore region
    masks = {
        "grey.png": _png(ids),
        "palette.png": _png(ids, palette=True),
        "small.png": _png(ids[:20, :20]),
        "rgb.png": _png(np.stack([ids] * 3, axis=-1)),
        "lossy.jpg": _png(ids, fmt="JPEG"),
    }
    (tmp_path / "masks").mkdir()
    for name, data in masks.items():
        (tmp_path / "masks" / name).write_bytes(data)
    rows = ["path,label,mask"]
    for i, name in enumerate([*masks, "missing.png", ""]):
        write_image(tmp_path / "images" / f"{i}.png", i, (width, height))
        rows.append(f"images/{i}.png,scene,{'masks/' + name if name else ''}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    config = folder_config(tmp_path / "labels.csv", source="csv", max_bad_fraction=1.0,
                           min_examples_per_class=0,  # a handful of images: classes of one
                           split_ratios={"train": 0.5, "eval": 0.5})

    result = ingest(config, str(tmp_path / "out"))

    examples = {e[F.FILENAME].decode(): e for split in result.counts_by_split
                for e in read_examples(result.examples_uri, split)}
    assert sorted(examples) == ["images/0.png", "images/1.png", "images/6.png"]
    for name in ("images/0.png", "images/1.png"):  # grey and palette PNGs: the same ids
        decoded = np.asarray(Image.open(io.BytesIO(examples[name][F.SEGMENTATION_MASK])))
        assert decoded.shape == (height, width)
        np.testing.assert_array_equal(decoded, ids)
    assert examples["images/6.png"][F.SEGMENTATION_MASK] == b""  # no mask given: none written
    reasons = {q["file"]: q["reason"] for q in load_report(result.report_path)["quarantined"]}
    assert load_report(result.report_path)["counts_by_reason"] == {"bad_mask": 4}
    assert "masks/small.png is 20x20 but its image is 40x30" in reasons["images/2.png"]
    assert "masks/rgb.png has mode RGB" in reasons["images/3.png"]
    assert "masks/lossy.jpg is JPEG; masks must be PNG" in reasons["images/4.png"]
    assert "mask file not found" in reasons["images/5.png"] and "missing.png" in reasons["images/5.png"]


def test_tfrecord_re_ingestion_keeps_group_ids_and_masks(tmp_path):
    rows = ["path,label,group,mask"]
    ids = np.zeros((24, 32), np.uint8)
    ids[4:12, 4:20] = 1
    (tmp_path / "m.png").write_bytes(_png(ids))
    for i in range(6):
        write_image(tmp_path / f"{i}.png", i)
        rows.append(f"{i}.png,{'a' if i % 2 else 'b'},g{i // 3},m.png")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")
    first = ingest(folder_config(tmp_path / "labels.csv", source="csv", split_ratios=RATIOS,
                                 min_examples_per_class=0),
                   str(tmp_path / "first"))
    config = folder_config(f"{first.examples_uri}/Split-*/*.gz", source="tfrecord", use_source_splits=True,
                           min_examples_per_class=0)

    again = ingest(config, str(tmp_path / "again"))

    assert again.counts_by_split == first.counts_by_split
    for split in again.counts_by_split:
        for example in read_examples(again.examples_uri, split):
            index = int(example[F.FILENAME].decode().split(".")[0])
            assert example[F.GROUP_ID].decode() == f"g{index // 3}"
            np.testing.assert_array_equal(
                np.asarray(Image.open(io.BytesIO(example[F.SEGMENTATION_MASK]))), ids)
