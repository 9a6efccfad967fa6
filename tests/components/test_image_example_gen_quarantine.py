"""Bad input is quarantined by name with its reason, and too much of it fails the run."""
import json

import pytest

from visionpipe.core import features as F
from visionpipe.components.image_example_gen import QuarantineLimitExceeded, SparseClassError, ingest

from .image_example_gen_helpers import (blank_png, filenames, folder_config, image_bytes, load_report,
                                        read_examples, write_folder_tree, write_image)

BAD_FILES = {
    "cat/truncated.jpg": ("corrupt_image", "truncated"),
    "cat/empty.png": ("zero_byte_file", "zero-byte file"),
    "dog/notes.png": ("unsupported_format", "not a recognised image"),
    "bird/bird_0.png": ("unknown_label", "label 'bird' is not in the class list"),
}


@pytest.fixture
def messy_folder(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 8, "dog": 8})
    jpeg = image_bytes(500, fmt="JPEG")
    (root / "cat" / "truncated.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    (root / "cat" / "empty.png").write_bytes(b"")
    (root / "dog" / "notes.png").write_text("this is a text file, not a PNG\n")
    write_folder_tree(root, {"bird": 1}, seed=600)
    (root / ".DS_Store").write_bytes(b"\0\0\0\1Bud1")  # hidden files are not inputs
    return root


def test_bad_files_fail_the_run_with_one_readable_message(messy_folder, tmp_path):
    config = folder_config(messy_folder, class_names=["cat", "dog"])

    with pytest.raises(QuarantineLimitExceeded) as raised:
        ingest(config, str(tmp_path / "out"))

    message = str(raised.value)
    report_path = tmp_path / "out" / "quarantine_report" / "quarantine.json"
    assert "4 of 20 inputs (20.0%) were quarantined" in message
    assert "data.max_bad_fraction=0" in message
    assert f"Report: {report_path}" in message
    for name, (_, reason) in BAD_FILES.items():
        (line,) = [line for line in message.splitlines() if line.startswith(f"  {name}: ")]
        assert reason in line[len(name) + 4:].lower()
    report = load_report(str(report_path))
    assert report["counts_by_reason"] == {"corrupt_image": 1, "unknown_label": 1,
                                          "unsupported_format": 1, "zero_byte_file": 1}


def test_each_bad_file_is_in_the_report_by_name_with_its_reason(messy_folder, tmp_path):
    result = ingest(folder_config(messy_folder, class_names=["cat", "dog"], max_bad_fraction=0.25),
                    str(tmp_path / "out"))

    report = load_report(result.report_path)
    quarantined = {q["file"]: (q["kind"], q["reason"]) for q in report["quarantined"]}
    assert set(quarantined) == set(BAD_FILES)
    for name, (kind, reason) in BAD_FILES.items():
        assert quarantined[name][0] == kind and reason in quarantined[name][1].lower(), quarantined[name]
    assert result.quarantined == 4 and report["bad_fraction"] == pytest.approx(0.2)


def test_raised_max_bad_fraction_keeps_every_good_image(messy_folder, tmp_path):
    result = ingest(folder_config(messy_folder, class_names=["cat", "dog"], max_bad_fraction=0.25),
                    str(tmp_path / "out"))

    kept = [name for split in ("train", "eval") for name in filenames(read_examples(result.examples_uri, split))]
    assert sorted(kept) == sorted([f"cat/cat_{i}.png" for i in range(8)] + [f"dog/dog_{i}.png" for i in range(8)])
    assert sum(result.counts_by_split.values()) == 16 and result.class_names == ["cat", "dog"]


def test_image_outside_a_class_folder_is_quarantined(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 6, "dog": 6})
    (root / "stray.png").write_bytes(image_bytes(77))

    result = ingest(folder_config(root, max_bad_fraction=0.1), str(tmp_path / "out"))

    report = load_report(result.report_path)
    assert [(q["file"], q["kind"]) for q in report["quarantined"]] == [("stray.png", "bad_annotation")]
    assert "not inside a <class>/ folder" in report["quarantined"][0]["reason"]


def test_zero_area_and_outside_boxes_quarantine_the_whole_coco_image(tmp_path):
    images, annotations = [], []
    boxes = {0: [[1, 1, 10, 10]], 1: [[1, 1, 10, 10], [5, 5, 0, 8]], 2: [[30, 20, 12, 5]],
             3: [[0, 0, 40, 30]], 4: [[-0.5, 2, 10, 10]]}
    boxes.update({i: [[2, 2, 8, 8]] for i in range(5, 12)})
    for i, image_boxes in boxes.items():
        write_image(tmp_path / f"{i}.png", i, (40, 30))
        images.append({"id": i, "file_name": f"{i}.png", "width": 40, "height": 30})
        for j, box in enumerate(image_boxes):
            annotations.append({"id": 100 * i + j, "image_id": i, "category_id": 1, "bbox": box})
    annotations.append({"id": 999, "image_id": 42, "category_id": 1, "bbox": [1, 1, 2, 2]})
    images.append({"id": 12, "file_name": "missing.png", "width": 40, "height": 30})
    (tmp_path / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "thing"}]}))

    result = ingest(folder_config(tmp_path / "coco.json", source="coco", max_bad_fraction=0.5,
                                  split_ratios={"train": 0.5, "eval": 0.5}), str(tmp_path / "out"))

    report = load_report(result.report_path)
    quarantined = {q["file"]: q["reason"] for q in report["quarantined"]}
    assert set(quarantined) == {"1.png", "2.png", "missing.png", f"{tmp_path}/coco.json#annotation-999"}
    assert "box 1 (xmin=5, ymin=5, xmax=5, ymax=13) has zero or negative area" in quarantined["1.png"]
    assert "box 0 (xmin=30, ymin=20, xmax=42, ymax=25) lies outside the 40x30 image" in quarantined["2.png"]
    assert "image file not found" in quarantined["missing.png"]
    assert "not in 'images'" in quarantined[f"{tmp_path}/coco.json#annotation-999"]
    # a box on the border (3.png) and one within the 1-pixel tolerance (4.png) are kept, clipped
    assert sum(result.counts_by_split.values()) == 10
    kept = {e[F.FILENAME]: e for split in ("train", "eval") for e in read_examples(result.examples_uri, split)}
    assert [kept[b"3.png"][k][0] for k in F.BBOX_KEYS] == [0.0, 0.0, 1.0, 1.0]
    assert kept[b"4.png"][F.BBOX_XMIN][0] == 0.0


def _coco_with_unannotated_images(root, annotated=6, unannotated=("bare_1.png", "bare_2.png")):
    """A COCO file with two classes; the images in ``unannotated`` have no annotation."""
    images, annotations = [], []
    names = [f"{i}.png" for i in range(annotated)] + list(unannotated)
    for i, name in enumerate(names):
        write_image(root / name, 700 + i, (40, 30))
        images.append({"id": i, "file_name": name, "width": 40, "height": 30})
        if i < annotated:
            annotations.append({"id": i, "image_id": i, "category_id": 1 + i % 2, "bbox": [2, 2, 20, 20]})
    path = root / "coco.json"
    path.write_text(json.dumps({"images": images, "annotations": annotations,
                                "categories": [{"id": 1, "name": "cat"}, {"id": 2, "name": "dog"}]}))
    return path


def _task_config(path, task, **data):
    from visionpipe.core.config import PipelineConfig

    config = PipelineConfig(task=task)
    config.data.path = str(path)
    for key, value in data.items():
        setattr(config.data, key, value)
    return config.validate()


def test_multilabel_image_without_labels_is_quarantined_by_name(tmp_path):
    path = _coco_with_unannotated_images(tmp_path)

    with pytest.raises(QuarantineLimitExceeded) as raised:
        ingest(_task_config(path, "multilabel", source="coco"), str(tmp_path / "out"))

    message = str(raised.value)
    for name in ("bare_1.png", "bare_2.png"):
        (line,) = [line for line in message.splitlines() if line.startswith(f"  {name}: ")]
        assert "has no labels" in line and "data.allow_unlabeled=true" in line
    report = load_report(str(tmp_path / "out" / "quarantine_report" / "quarantine.json"))
    assert report["counts_by_reason"] == {"no_labels": 2}


def test_multilabel_image_without_labels_is_a_negative_when_allowed(tmp_path):
    path = _coco_with_unannotated_images(tmp_path)

    result = ingest(_task_config(path, "multilabel", source="coco", allow_unlabeled=True,
                                 split_ratios={"train": 0.5, "eval": 0.5}), str(tmp_path / "out"))

    assert result.quarantined == 0
    kept = {e[F.FILENAME]: e for split in ("train", "eval") for e in read_examples(result.examples_uri, split)}
    assert kept[b"bare_1.png"][F.LABEL].tolist() == [] and kept[b"bare_2.png"][F.LABEL_TEXT].tolist() == []
    assert kept[b"1.png"][F.LABEL_TEXT].tolist() == [b"dog"]


def test_detection_image_without_boxes_is_kept_as_a_background_image(tmp_path):
    path = _coco_with_unannotated_images(tmp_path)

    result = ingest(_task_config(path, "detection", source="coco",
                                 split_ratios={"train": 0.5, "eval": 0.5}), str(tmp_path / "out"))

    assert result.quarantined == 0
    kept = {e[F.FILENAME]: e for split in ("train", "eval") for e in read_examples(result.examples_uri, split)}
    assert kept[b"bare_1.png"][F.BBOX_XMIN].tolist() == [] and len(kept[b"0.png"][F.BBOX_XMIN]) == 1


def test_single_label_csv_row_without_label_is_quarantined_as_no_labels(tmp_path):
    rows = ["path,label"] + [f"{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(8)] + ["8.png,"]
    for i in range(9):
        write_image(tmp_path / f"{i}.png", 800 + i)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    result = ingest(folder_config(tmp_path / "labels.csv", source="csv", max_bad_fraction=0.2),
                    str(tmp_path / "out"))

    report = load_report(result.report_path)
    assert [(q["file"], q["kind"]) for q in report["quarantined"]] == [("8.png", "no_labels")]
    assert "needs exactly one" in report["quarantined"][0]["reason"]


def test_empty_class_folder_stops_the_ingest_naming_the_class_and_the_override(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 6, "dog": 6})
    (root / "zebra_empty_class").mkdir()

    with pytest.raises(SparseClassError) as raised:
        ingest(folder_config(root), str(tmp_path / "out"))

    message = str(raised.value)
    assert "'zebra_empty_class': 0 training image(s) (no image in any split)" in message
    assert "data.min_examples_per_class=2" in message and "labels.txt" in message
    assert "'cat'" not in message and "'dog'" not in message
    report = load_report(str(tmp_path / "out" / "quarantine_report" / "quarantine.json"))
    assert report["images_by_class"]["zebra_empty_class"] == {"train": 0, "eval": 0}
    assert sum(report["images_by_class"]["cat"].values()) == 6


def test_mistyped_csv_label_is_a_class_of_one_that_stops_the_ingest_by_file(tmp_path):
    rows = ["path,label"] + [f"{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(10)] + ["10.png,cta"]
    for i in range(11):
        write_image(tmp_path / f"{i}.png", 900 + i)
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    with pytest.raises(SparseClassError) as raised:
        ingest(folder_config(tmp_path / "labels.csv", source="csv"), str(tmp_path / "out"))

    (line,) = [line for line in str(raised.value).splitlines() if line.startswith("  'cta'")]
    assert line.endswith(": 10.png") and ("(1 in train)" in line or "(1 in eval)" in line)


def test_class_without_training_images_is_kept_with_a_warning_when_the_minimum_is_zero(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 6, "dog": 6})
    (root / "zebra_empty_class").mkdir()

    result = ingest(folder_config(root, min_examples_per_class=0), str(tmp_path / "out"))

    assert result.class_names == ["cat", "dog", "zebra_empty_class"]
    (warning,) = load_report(result.report_path)["warnings"]
    assert "['zebra_empty_class'] have no training image" in warning


def test_image_over_the_pixel_limit_is_quarantined_as_too_large_from_its_header(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 6, "dog": 6})
    write_image(root / "cat" / "big.png", 990, size=(40, 30))  # 1200 pixels

    result = ingest(folder_config(root, max_image_pixels=1000, max_bad_fraction=0.1), str(tmp_path / "out"))

    (entry,) = load_report(result.report_path)["quarantined"]
    assert (entry["file"], entry["kind"]) == ("cat/big.png", "too_large")
    assert "image of 40x30 pixels exceeds the limit of 1000 pixels (data.max_image_pixels" in entry["reason"]


def test_decompression_bombs_are_too_large_not_accepted_nor_corrupt(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 6, "dog": 6})
    (root / "cat" / "bomb_12k.png").write_bytes(blank_png(12000, 12000))  # PIL warns, then decodes
    (root / "dog" / "bomb_20k.png").write_bytes(blank_png(20000, 20000))  # PIL raises
    (root / "dog" / "wide.png").write_bytes(blank_png(10000, 5000))  # 50 Mpx: only our limit

    result = ingest(folder_config(root, max_bad_fraction=0.3), str(tmp_path / "out"))

    quarantined = {q["file"]: q for q in load_report(result.report_path)["quarantined"]}
    assert {name: q["kind"] for name, q in quarantined.items()} == {
        "cat/bomb_12k.png": "too_large", "dog/bomb_20k.png": "too_large", "dog/wide.png": "too_large"}
    assert "decompression-bomb limit" in quarantined["dog/bomb_20k.png"]["reason"]
    assert "10000x5000 pixels exceeds the limit of 40000000" in quarantined["dog/wide.png"]["reason"]
