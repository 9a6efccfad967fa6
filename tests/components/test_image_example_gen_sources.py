"""ImageExampleGen reads every source kind into the one feature spec."""
import hashlib
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from visionpipe.core import features as F
from visionpipe.components.image_example_gen import ingest
from visionpipe.core.examples import read_class_names
from visionpipe.components.image_example_gen.splitting import split_by_ratio

from .image_example_gen_helpers import (filenames, folder_config, image_bytes, load_report,
                                        read_examples, write_folder_tree, write_image, write_voc)


def test_folder_split_subfolders_become_train_and_eval(tmp_path):
    seed = write_folder_tree(tmp_path / "data", {"cat": 5, "dog": 4}, split="train")
    write_folder_tree(tmp_path / "data", {"cat": 2, "dog": 2}, split="val", seed=seed)
    config = folder_config(tmp_path / "data", use_source_splits=True, source_split_map={"val": "eval"})

    result = ingest(config, str(tmp_path / "out"))

    assert result.counts_by_split == {"eval": 4, "train": 9}
    assert result.quarantined == 0
    assert read_class_names(result.examples_uri) == ["cat", "dog"]
    train, evaluation = read_examples(result.examples_uri, "train"), read_examples(result.examples_uri, "eval")
    assert filenames(evaluation) == ["val/cat/cat_0.png", "val/cat/cat_1.png",
                                     "val/dog/dog_0.png", "val/dog/dog_1.png"]
    for example in train + evaluation:
        name = example[F.FILENAME].decode().split("/")[1]
        assert example[F.LABEL_TEXT].tolist() == [name.encode()]
        assert example[F.LABEL].tolist() == [["cat", "dog"].index(name)]
        assert (example[F.WIDTH], example[F.HEIGHT], example[F.FORMAT]) == (32, 24, b"png")
        assert example[F.SOURCE_ID].decode() == hashlib.sha256(example[F.ENCODED]).hexdigest()


@pytest.fixture(scope="module")
def ratio_runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("ratio")
    write_folder_tree(root / "data", {"a": 12, "b": 12})
    # the same bytes under two names (one in each class): kept once, reported
    shutil.copy(root / "data" / "a" / "a_0.png", root / "data" / "b" / "copy_of_a0.png")
    config = folder_config(root / "data", split_ratios={"train": 0.5, "eval": 0.5})
    return [ingest(config, str(root / f"out{i}")) for i in range(2)]


def test_ratio_splits_follow_the_content_hash_and_repeat_across_runs(ratio_runs):
    first, second = ratio_runs
    assert first.counts_by_split == second.counts_by_split
    assert sum(first.counts_by_split.values()) == 24 and min(first.counts_by_split.values()) > 0
    ratios = [("train", 0.5), ("eval", 0.5)]
    ids = {}
    for run in ratio_runs:
        for split in ("train", "eval"):
            examples = read_examples(run.examples_uri, split)
            assert all(split_by_ratio(e[F.SOURCE_ID].decode(), ratios) == split for e in examples)
            ids.setdefault(split, []).append(sorted(e[F.SOURCE_ID] for e in examples))
    assert ids["train"][0] == ids["train"][1] and ids["eval"][0] == ids["eval"][1]
    assert not set(ids["train"][0]) & set(ids["eval"][0])


def test_duplicate_image_is_kept_once_and_reported_with_both_names(ratio_runs):
    result = ratio_runs[0]
    report = load_report(result.report_path)
    assert result.duplicates == 1
    assert [(d["file"], d["duplicate_of"]) for d in report["duplicates"]] == [("b/copy_of_a0.png", "a/a_0.png")]
    kept = [f for split in ("train", "eval") for f in filenames(read_examples(result.examples_uri, split))]
    assert "a/a_0.png" in kept and "b/copy_of_a0.png" not in kept
    assert report["total_inputs"] == 25 and report["kept"] == 24


def test_duplicates_keep_the_original_file_and_name_each_later_copy(tmp_path):
    root = tmp_path / "data"
    write_folder_tree(root, {"cat": 4, "dog": 4})
    original = root / "cat" / "ok_0.jpg"
    write_image(original, 42, fmt="JPEG")
    for copy in ("ok_0 (copy).jpg", "ok_0 - Copy.jpg"):  # names that plain sorting lists first
        shutil.copy(original, root / "cat" / copy)

    result = ingest(folder_config(root, min_examples_per_class=0), str(tmp_path / "out"))

    report = load_report(result.report_path)
    assert sorted((d["file"], d["duplicate_of"]) for d in report["duplicates"]) == [
        ("cat/ok_0 (copy).jpg", "cat/ok_0.jpg"), ("cat/ok_0 - Copy.jpg", "cat/ok_0.jpg")]
    kept = [f for split in result.counts_by_split for f in filenames(read_examples(result.examples_uri, split))]
    assert "cat/ok_0.jpg" in kept and not [f for f in kept if "opy" in f]


def test_csv_duplicates_keep_the_row_listed_first(tmp_path):
    rows = ["path,label", "zebra_first.png,cat"] + [f"{i}.png,{'cat' if i % 2 else 'dog'}" for i in range(8)]
    for i in range(8):
        write_image(tmp_path / f"{i}.png", 60 + i)
    write_image(tmp_path / "zebra_first.png", 99)
    shutil.copy(tmp_path / "zebra_first.png", tmp_path / "a_later.png")
    (tmp_path / "labels.csv").write_text("\n".join(rows + ["a_later.png,cat"]) + "\n")

    result = ingest(folder_config(tmp_path / "labels.csv", source="csv", min_examples_per_class=0),
                    str(tmp_path / "out"))

    assert [(d["file"], d["duplicate_of"]) for d in load_report(result.report_path)["duplicates"]] == [
        ("a_later.png", "zebra_first.png")]


def test_csv_single_label_paths_resolve_against_the_csv_folder(tmp_path):
    rows = ["path,label"]
    for i in range(8):
        label = "cat" if i % 2 else "dog"
        write_image(tmp_path / "imgs" / f"{i}.png", i)
        rows.append(f"imgs/{i}.png,{label}")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    result = ingest(folder_config(tmp_path / "labels.csv", source="csv"), str(tmp_path / "out"))

    assert sum(result.counts_by_split.values()) == 8 and result.class_names == ["cat", "dog"]
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            index = int(example[F.FILENAME].decode().split("/")[1].split(".")[0])
            assert example[F.LABEL_TEXT].tolist() == [b"cat" if index % 2 else b"dog"]


def test_csv_multi_label_rows_get_every_label_from_images_dir(tmp_path):
    labels = ["cat|dog", "dog", "cat|bird|dog", "bird"] * 3
    rows = ["path,label"]
    for i, label in enumerate(labels):
        write_image(tmp_path / "pics" / f"{i}.jpg", i, fmt="JPEG")
        rows.append(f"{i}.jpg,{label}")
    (tmp_path / "meta").mkdir()
    (tmp_path / "meta" / "labels.csv").write_text("\n".join(rows) + "\n")
    config = folder_config(tmp_path / "meta" / "labels.csv", source="csv", images_dir=str(tmp_path / "pics"),
                           class_names=["bird", "cat", "dog"])

    result = ingest(config, str(tmp_path / "out"))

    assert sum(result.counts_by_split.values()) == 12
    seen = 0
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            index = int(example[F.FILENAME].decode().split(".")[0])
            expected = labels[index].split("|")
            assert [t.decode() for t in example[F.LABEL_TEXT]] == expected
            assert example[F.LABEL].tolist() == [["bird", "cat", "dog"].index(n) for n in expected]
            assert example[F.FORMAT] == b"jpeg"
            seen += 1
    assert seen == 12


def _png_mask(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)))


def test_coco_polygon_and_rle_segmentations_become_png_masks(tmp_path):
    from pycocotools import mask as mask_utils

    width, height = 40, 30
    images, annotations = [], []
    block = np.zeros((height, width), dtype=np.uint8, order="F")
    block[5:15, 10:30] = 1  # 200 pixels
    compressed = mask_utils.encode(block)
    compressed["counts"] = compressed["counts"].decode("ascii")
    runs, value, count = [], 0, 0
    for pixel in block.flatten(order="F"):  # uncompressed RLE: column-major run lengths
        if pixel != value:
            runs.append(count)
            value, count = pixel, 0
        count += 1
    runs.append(count)
    segmentations = [
        [[10, 5, 30, 5, 30, 15, 10, 15]],  # polygon
        {"size": [height, width], "counts": runs},  # uncompressed RLE
        compressed,  # compressed RLE
    ]
    for i, segmentation in enumerate(segmentations * 2):
        write_image(tmp_path / "images" / f"{i}.png", i, (width, height))
        images.append({"id": 100 + i, "file_name": f"{i}.png", "width": width, "height": height})
        annotations.append({"id": i, "image_id": 100 + i, "category_id": 7 if i % 2 else 3,
                            "bbox": [10, 5, 20, 10], "segmentation": segmentation, "iscrowd": 0})
    categories = [{"id": 7, "name": "zebra"}, {"id": 3, "name": "ant"}]
    (tmp_path / "coco.json").write_text(json.dumps(
        {"images": images, "annotations": annotations, "categories": categories}))
    config = folder_config(tmp_path / "coco.json", source="coco", images_dir=str(tmp_path / "images"),
                           split_ratios={"train": 0.5, "eval": 0.5}, min_examples_per_class=0)

    result = ingest(config, str(tmp_path / "out"))

    assert result.class_names == ["ant", "zebra"]  # categories ordered by id
    assert sum(result.counts_by_split.values()) == 6 and sum(result.objects_by_split.values()) == 6
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            index = int(example[F.FILENAME].decode().split(".")[0])
            assert example[F.OBJECT_TEXT].tolist() == [b"zebra" if index % 2 else b"ant"]
            assert example[F.LABEL_TEXT].tolist() == example[F.OBJECT_TEXT].tolist()
            np.testing.assert_allclose([example[k][0] for k in F.BBOX_KEYS],
                                       [5 / 30, 10 / 40, 15 / 30, 30 / 40], rtol=1e-6)
            (mask,) = example[F.OBJECT_MASK]
            np.testing.assert_array_equal(_png_mask(mask), block * 255)


def test_voc_uses_its_imagesets_splits_and_quarantines_the_bad_box(tmp_path):
    objects = {f"img{i}": [("car", 2, 3, 20, 25), ("person", 25, 1, 40, 30)] for i in range(8)}
    objects["img7"] = [("car", 5, 5, 45, 20)]  # 5 pixels past the 40-pixel-wide image
    root = write_voc(tmp_path / "voc", objects, {
        "train": ["img0", "img1", "img2", "img3"], "val": ["img4", "img5"], "test": ["img6", "img7"]})
    config = folder_config(root, source="voc", use_source_splits=True,
                           source_split_map={"val": "eval"}, max_bad_fraction=0.2)

    result = ingest(config, str(tmp_path / "out"))

    assert result.counts_by_split == {"eval": 2, "test": 1, "train": 4}
    assert result.class_names == ["car", "person"]
    report = load_report(result.report_path)
    assert [(q["file"], q["kind"]) for q in report["quarantined"]] == [("JPEGImages/img7.jpg", "bad_box")]
    assert "box 0 (xmin=5, ymin=5, xmax=45, ymax=20) lies outside the 40x30 image" in report["quarantined"][0]["reason"]
    (example, *_) = read_examples(result.examples_uri, "eval")
    np.testing.assert_allclose([example[k].tolist() for k in F.BBOX_KEYS],
                               [[3 / 30, 1 / 30], [2 / 40, 25 / 40], [25 / 30, 1.0], [20 / 40, 1.0]], rtol=1e-6)
    assert example[F.OBJECT_LABEL].tolist() == [0, 1] and example[F.LABEL].tolist() == [0, 1]


def test_tfds_mock_dataset_is_read_from_its_local_data_dir(tmp_path):
    import tensorflow_datasets as tfds

    config = folder_config("", source="tfds", tfds_name="mnist", tfds_data_dir=str(tmp_path / "tfds"),
                           tfds_splits=["train"], split_ratios={"train": 0.75, "eval": 0.25},
                           min_examples_per_class=0)  # 16 mock images for 10 classes
    with tfds.testing.mock_data(num_examples=16):
        result = ingest(config, str(tmp_path / "out"))

    assert result.class_names == [str(d) for d in range(10)]
    assert sum(result.counts_by_split.values()) + result.duplicates == 16
    for split in result.counts_by_split:
        for example in read_examples(result.examples_uri, split):
            assert (example[F.WIDTH], example[F.HEIGHT], example[F.FORMAT]) == (28, 28, b"png")
            assert example[F.FILENAME].decode().startswith("mnist/train/")
            assert example[F.LABEL_TEXT].tolist() == [str(example[F.LABEL][0]).encode()]


def _voc_like_examples(boxes_per_image):
    """A tf.data stand-in for a prepared voc/2007 split: PNG bytes (the source skips
    decoding), boxes in TFDS's normalised (ymin, xmin, ymax, xmax), VOC label ids."""
    import tensorflow as tf

    def generate():
        for index, (boxes, labels) in enumerate(boxes_per_image):
            yield {"image": image_bytes(500 + index, size=(40, 20)),
                   "image/filename": f"{index:06d}.jpg",
                   "objects": {"bbox": np.array(boxes, np.float32).reshape(-1, 4),
                               "label": np.array(labels, np.int64),
                               "pose": np.zeros(len(labels), np.int64),
                               "is_truncated": np.zeros(len(labels), bool),
                               "is_difficult": np.zeros(len(labels), bool)},
                   "labels": np.array(sorted(set(labels)), np.int64),
                   "labels_no_difficult": np.array(sorted(set(labels)), np.int64)}

    spec = {"image": tf.TensorSpec([], tf.string), "image/filename": tf.TensorSpec([], tf.string),
            "objects": {"bbox": tf.TensorSpec([None, 4], tf.float32),
                        "label": tf.TensorSpec([None], tf.int64),
                        "pose": tf.TensorSpec([None], tf.int64),
                        "is_truncated": tf.TensorSpec([None], tf.bool),
                        "is_difficult": tf.TensorSpec([None], tf.bool)},
            "labels": tf.TensorSpec([None], tf.int64),
            "labels_no_difficult": tf.TensorSpec([None], tf.int64)}
    return tf.data.Dataset.from_generator(generate, output_signature=spec)


def test_tfds_detection_dataset_gives_boxes_and_its_object_classes(tmp_path):
    import tensorflow_datasets as tfds

    person, dog = 14, 11  # ids in VOC's label list
    images = [([[0.1, 0.2, 0.6, 0.5], [0.5, 0.5, 0.9, 1.0]], [person, dog]),
              ([[0.0, 0.0, 1.0, 1.0]], [dog]),
              ([[0.6, 0.2, 0.3, 0.5]], [person])]  # ymin > ymax: quarantined by name
    images += [([[0.2, 0.2, 0.4, 0.4]], [person])] * 5  # (distinct pixels per index)
    config = folder_config("", source="tfds", tfds_name="voc/2007", tfds_data_dir=str(tmp_path / "tfds"),
                           tfds_splits=["train"], split_ratios={"train": 0.5, "eval": 0.5},
                           max_bad_fraction=0.2, min_examples_per_class=0)  # 2 of VOC's 20 classes
    with tfds.testing.mock_data(as_dataset_fn=lambda *args, **kwargs: _voc_like_examples(images)):
        result = ingest(config, str(tmp_path / "out"))

    assert result.class_names[person] == "person" and result.class_names[dog] == "dog"
    assert len(result.class_names) == 20
    assert result.quarantined == 1
    assert load_report(result.report_path)["quarantined"][0]["file"] == "voc/2007/train/2"
    examples = {e[F.FILENAME].decode(): e for split in result.counts_by_split
                for e in read_examples(result.examples_uri, split)}
    first = examples["voc/2007/train/0"]
    np.testing.assert_allclose(np.stack([first[k] for k in F.BBOX_KEYS], axis=1),
                               [[0.1, 0.2, 0.6, 0.5], [0.5, 0.5, 0.9, 1.0]], atol=1e-6)
    assert first[F.OBJECT_TEXT].tolist() == [b"person", b"dog"]
    assert first[F.OBJECT_LABEL].tolist() == [person, dog]
    assert sorted(first[F.LABEL_TEXT].tolist()) == [b"dog", b"person"]  # image-level 'labels'


def test_tfrecords_are_re_ingested_and_a_record_without_image_is_quarantined(tmp_path):
    import tensorflow as tf

    seed = write_folder_tree(tmp_path / "data", {"cat": 4, "dog": 4}, split="train")
    write_folder_tree(tmp_path / "data", {"cat": 2, "dog": 2}, split="eval", seed=seed)
    first = ingest(folder_config(tmp_path / "data", use_source_splits=True), str(tmp_path / "first"))
    # an uncompressed file beside the gzip shards: one record without pixels, one labelled by id
    with tf.io.TFRecordWriter(f"{first.examples_uri}/Split-train/extra.tfrecord") as writer:
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            F.FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"no_pixels.png"]))}))
            .SerializeToString())
        writer.write(tf.train.Example(features=tf.train.Features(feature={
            F.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image_bytes(999)])),
            F.FILENAME: tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"by_id.png"])),
            F.LABEL: tf.train.Feature(int64_list=tf.train.Int64List(value=[1]))}))
            .SerializeToString())

    again = ingest(folder_config(f"{first.examples_uri}/Split-*/*", source="tfrecord", use_source_splits=True,
                                 class_names=["cat", "dog"], max_bad_fraction=0.1), str(tmp_path / "again"))

    assert first.counts_by_split == {"eval": 4, "train": 8}
    assert again.counts_by_split == {"eval": 4, "train": 9}
    report = load_report(again.report_path)
    assert [(q["file"], q["kind"]) for q in report["quarantined"]] == [("no_pixels.png", "missing_image_data")]
    before = {e[F.SOURCE_ID]: e[F.LABEL_TEXT].tolist() for e in read_examples(first.examples_uri, "train")}
    after = {e[F.FILENAME]: e[F.LABEL_TEXT].tolist() for e in read_examples(again.examples_uri, "train")}
    assert after.pop(b"by_id.png") == [b"dog"]
    assert sorted(after.values()) == sorted(before.values())


def test_tfrecord_class_names_are_discovered_from_class_text(tmp_path):
    write_folder_tree(tmp_path / "data", {"owl": 3, "emu": 3}, split="train")
    write_folder_tree(tmp_path / "data", {"owl": 2, "emu": 2}, split="eval", seed=50)
    first = ingest(folder_config(tmp_path / "data", use_source_splits=True), str(tmp_path / "first"))

    again = ingest(folder_config(f"{first.examples_uri}/Split-*/*.gz", source="tfrecord", use_source_splits=True),
                   str(tmp_path / "again"))

    assert again.class_names == ["emu", "owl"] and again.counts_by_split == {"eval": 4, "train": 6}


def test_bccd_official_splits_with_its_zero_area_boxes_quarantined(shared_datasets, tmp_path):
    config = folder_config(shared_datasets / "bccd" / "BCCD", source="voc", use_source_splits=True,
                           source_split_map={"val": "eval"}, max_bad_fraction=0.01)

    result = ingest(config, str(tmp_path / "out"))

    report = load_report(result.report_path)
    assert [(q["file"], q["reason"]) for q in report["quarantined"]] == [
        ("JPEGImages/BloodImage_00338.jpg", "box 12 (xmin=504, ymin=337, xmax=504, ymax=337) has zero or negative area"),
        ("JPEGImages/BloodImage_00343.jpg", "box 3 (xmin=181, ymin=329, xmax=181, ymax=329) has zero or negative area"),
    ]
    # official lists: train 205, val 87, test 72; 00343 is in train, 00338 in val
    assert result.counts_by_split == {"eval": 86, "test": 72, "train": 204}
    assert result.class_names == ["Platelets", "RBC", "WBC"]
    assert sum(result.objects_by_split.values()) == 4888 - 26  # the two images held 26 boxes
    evaluation = read_examples(result.examples_uri, "eval")
    assert len(evaluation) == 86
    for example in evaluation:
        assert (example[F.WIDTH], example[F.HEIGHT], example[F.FORMAT]) == (640, 480, b"jpeg")
        boxes = np.stack([example[k] for k in F.BBOX_KEYS], axis=1)
        assert len(boxes) == len(example[F.OBJECT_LABEL]) > 0
        assert (boxes >= 0).all() and (boxes <= 1).all()
        assert (boxes[:, 2] > boxes[:, 0]).all() and (boxes[:, 3] > boxes[:, 1]).all()
        assert example[F.LABEL].tolist() == sorted(set(example[F.OBJECT_LABEL].tolist()))
