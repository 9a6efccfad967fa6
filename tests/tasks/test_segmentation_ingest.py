"""Image + mask folder pairs for segmentation: binary 0/255 masks become ids 0/1 through
``data.mask_values``, and a missing, unreadable or mis-sized mask is quarantined by name."""
from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from visionpipe.core import features as F
from visionpipe.core.config import ConfigError, PipelineConfig

from tests.components.image_example_gen_helpers import load_report, read_examples


def _write(path, pixels):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels.astype(np.uint8)).save(path)


def _pairs_config(root, **data):
    config = PipelineConfig()
    config.task = "segmentation"
    config.model.image_size = 32
    config.data.source = "mask_folder"
    config.data.path = str(root)
    config.data.image_folder, config.data.mask_folder = "image", "label"
    config.data.mask_values = {"0": "membrane", "255": "interior"}
    config.data.split_ratios = {"train": 0.5, "eval": 0.5}
    config.data.max_bad_fraction = 0.5
    config.data.min_examples_per_class = 0
    for key, value in data.items():
        setattr(config.data, key, value)
    return config.validate()


def test_mask_folder_pairs_map_binary_masks_to_ids_and_quarantine_bad_masks_by_name(tmp_path):
    from visionpipe.components.image_example_gen import ingest

    rng = np.random.default_rng(0)
    for i in range(6):
        _write(tmp_path / "image" / f"{i}.png", rng.integers(0, 255, (24, 32)))
        mask = np.zeros((24, 32)); mask[:, 16:] = 255
        _write(tmp_path / "label" / f"{i}.png", mask)
    _write(tmp_path / "image" / "small.png", rng.integers(0, 255, (24, 32)))
    _write(tmp_path / "label" / "small.png", np.zeros((12, 16)))            # mis-sized
    _write(tmp_path / "image" / "alone.png", rng.integers(0, 255, (24, 32)))  # no mask
    _write(tmp_path / "image" / "broken.png", rng.integers(0, 255, (24, 32)))
    (tmp_path / "label" / "broken.png").write_bytes(b"not a png")           # unreadable
    _write(tmp_path / "image" / "grey.png", rng.integers(0, 255, (24, 32)))
    _write(tmp_path / "label" / "grey.png", np.full((24, 32), 128))         # a value not listed

    result = ingest(_pairs_config(tmp_path), str(tmp_path / "out"))

    assert result.class_names == ["membrane", "interior"]
    examples = [e for split in result.counts_by_split for e in read_examples(result.examples_uri, split)]
    assert len(examples) == 6
    for example in examples:
        ids = np.asarray(Image.open(io.BytesIO(example[F.SEGMENTATION_MASK])))
        assert set(np.unique(ids)) == {0, 1} and (ids[:, 16:] == 1).all()
        assert sorted(t.decode() for t in example[F.LABEL_TEXT]) == ["interior", "membrane"]
    reasons = {q["file"]: q["reason"] for q in load_report(result.report_path)["quarantined"]}
    assert set(reasons) == {"image/small.png", "image/alone.png", "image/broken.png", "image/grey.png"}
    assert "label/small.png is 16x12 but its image is 32x24" in reasons["image/small.png"]
    assert "has no mask label/alone.png" in reasons["image/alone.png"]
    assert "label/broken.png is not a readable image" in reasons["image/broken.png"]
    assert "pixel values [128]" in reasons["image/grey.png"]


def test_a_mask_folder_source_without_classes_is_a_config_error(tmp_path):
    from visionpipe.components.image_example_gen.sources import make_source

    _write(tmp_path / "image" / "0.png", np.zeros((8, 8)))
    _write(tmp_path / "label" / "0.png", np.zeros((8, 8)))
    with pytest.raises(ConfigError, match="data.mask_values"):
        make_source(_pairs_config(tmp_path, mask_values={}).data)


def test_an_image_without_a_mask_is_quarantined_for_segmentation(tmp_path):
    from visionpipe.components.image_example_gen import items as it
    from visionpipe.components.image_example_gen.validation import ImageRules, validate_item

    _write(tmp_path / "a.png", np.zeros((8, 8, 3)))
    rules = ImageRules.from_config(_pairs_config(tmp_path))
    result = validate_item(it.SourceItem(filename="a.png", path=str(tmp_path / "a.png")),
                           ["membrane", "interior"], rules)
    assert isinstance(result, it.Quarantined) and result.kind == it.BAD_MASK
    assert "no semantic mask" in result.reason


def test_mask_values_that_are_not_pixel_values_are_refused():
    config = PipelineConfig()
    config.task = "segmentation"
    config.data.mask_values = {"300": "x"}
    with pytest.raises(ConfigError, match="data.mask_values"):
        config.validate()
