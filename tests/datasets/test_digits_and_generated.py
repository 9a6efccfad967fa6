import collections
import hashlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionpipe.tasks import prepare_generated_source
from visionpipe.datasets.digits import write_digits_folder
from visionpipe.core.config import ConfigError, load_config


def test_digits_are_real_balanced_and_traceable_to_their_csv_row(tmp_path):
    from sklearn.datasets import load_digits

    written = write_digits_folder(tmp_path, 45, 32, seed=1)
    counts = collections.Counter(name for _, name in written)
    assert len(counts) == 10 and max(counts.values()) - min(counts.values()) <= 1
    digits = load_digits()
    for path, name in written[:10]:
        row = int(Path(path).stem)
        assert str(digits.target[row]) == name and Path(path).parent.name == name
        pixels = np.asarray(Image.open(path))
        assert pixels.shape == (32, 32)
        expected = 255 - np.round(digits.images[row] * 255 / 16).astype(np.uint8)
        assert (pixels[::4, ::4] == expected).all()


def test_digits_order_is_deterministic_per_seed(tmp_path):
    first = write_digits_folder(tmp_path / "a", 12, 16, seed=3)
    again = write_digits_folder(tmp_path / "b", 12, 16, seed=3)
    other = write_digits_folder(tmp_path / "c", 12, 16, seed=4)
    assert [Path(p).name for p, _ in first] == [Path(p).name for p, _ in again]
    assert [Path(p).name for p, _ in first] != [Path(p).name for p, _ in other]


def test_digits_reject_a_size_that_is_not_a_multiple_of_8(tmp_path):
    with pytest.raises(ValueError, match="multiple of 8"):
        write_digits_folder(tmp_path, 5, 30)


def _tree_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(Path(root).rglob("*")) if p.is_file()}


def test_prepared_shapes_folder_is_written_once_and_reused(tmp_path):
    config = load_config(overrides=["data.source=shapes", "data.num_images=15",
                                    "data.image_size=32"])
    path, source = prepare_generated_source(config, tmp_path)
    assert source == "folder"
    root = Path(path)
    assert sorted(p.name for p in root.iterdir()) == sorted(
        ["circle", "square", "triangle", "star", "cross"])
    assert len(list(root.rglob("*.png"))) == 15
    mtimes = {p: p.stat().st_mtime_ns for p in root.rglob("*.png")}
    assert prepare_generated_source(config, tmp_path) == (path, source)
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*.png")} == mtimes
    # Only images in the tree: the folder source must not meet a stray record file.
    assert all(p.suffix == ".png" for p in root.rglob("*") if p.is_file())


def test_prepared_source_follows_the_task_layout(tmp_path):
    multilabel = load_config(overrides=["task=multilabel", "data.num_images=6",
                                        "data.image_size=32"])
    detection = load_config(overrides=["task=detection", "data.num_images=6",
                                       "data.image_size=32"])
    path, source = prepare_generated_source(multilabel, tmp_path)
    assert path.endswith("labels.csv") and source == "csv"
    path, source = prepare_generated_source(detection, tmp_path)
    assert path.endswith("annotations.json") and source == "coco"


def test_prepared_digits_match_the_direct_writer(tmp_path):
    config = load_config(overrides=["data.source=digits", "data.num_images=20",
                                    "data.image_size=16", "data.seed=2"])
    path, _ = prepare_generated_source(config, tmp_path / "run")
    write_digits_folder(tmp_path / "direct", 20, 16, seed=2)
    assert _tree_digest(path) == _tree_digest(tmp_path / "direct")


@pytest.mark.parametrize("overrides, key", [
    (["data.source=digits", "task=detection"], "data.source"),
    (["data.source=digits", "data.image_size=36"], "data.image_size"),
    (["data.source=digits", "data.num_images=5000"], "data.num_images"),
    (["data.source=shapes", "data.image_size=8"], "data.image_size"),
    (["data.source=folder", "data.path=/x"], "data.source"),
])
def test_bad_generated_config_names_the_key(tmp_path, overrides, key):
    config = load_config(overrides=overrides)
    with pytest.raises(ConfigError, match=f"^{key}:"):
        prepare_generated_source(config, tmp_path)


@pytest.mark.parametrize("task, source", [("multilabel", "shapes"), ("detection", "shapes"),
                                          ("classification", "digits")])
def test_generated_data_is_ingested_without_quarantine(tmp_path, task, source):
    from visionpipe.components.image_example_gen import ingest

    config = load_config(overrides=[f"task={task}", f"data.source={source}",
                                    "data.num_images=20", "data.image_size=32"])
    path, ingest_source = prepare_generated_source(config, tmp_path / "run")
    ingest_config = load_config(overrides=[f"task={task}", f"data.source={ingest_source}",
                                           f"data.path={path}", "data.image_size=32",
                                           "data.min_examples_per_class=0"])  # 2 digits a class
    result = ingest(ingest_config, str(tmp_path / "ingested"))
    assert result.quarantined == 0 and result.duplicates == 0
    assert sum(result.counts_by_split.values()) == 20
    if task == "detection":
        import json

        annotations = json.loads(Path(path).read_text())["annotations"]
        assert sum(result.objects_by_split.values()) == len(annotations)
