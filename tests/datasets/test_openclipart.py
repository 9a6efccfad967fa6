"""The openclipart compositing, on tiny hand-made RGBA drawings (never the Debian files)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from visionpipe.datasets import openclipart


def _drawing(path, colour, size=(12, 8)):
    """An opaque rectangle of ``colour`` with a transparent border of 2 px."""
    rgba = np.zeros((size[1], size[0], 4), np.uint8)
    rgba[2:-2, 2:-2] = [*colour, 255]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rgba, mode="RGBA").save(path)


def test_the_mask_is_the_class_id_exactly_where_the_drawings_alpha_is_opaque():
    image = np.full((16, 16, 3), 50, np.uint8)
    mask = np.zeros((16, 16), np.uint8)
    rgba = np.zeros((6, 6, 4), np.uint8)
    rgba[1:5, 1:5] = [200, 0, 0, 255]
    rgba[0, :] = [0, 0, 200, 100]  # below the threshold: blended into the image, not in the mask
    openclipart.composite(image, mask, Image.fromarray(rgba, mode="RGBA"), 3, top=-1, left=12)
    expected = np.zeros((16, 16), np.uint8)
    expected[0:4, 13:16] = 3  # hangs off the top and right edges: the rest is cut off
    np.testing.assert_array_equal(mask, expected)
    np.testing.assert_array_equal(image[0:4, 13:16], [[[200, 0, 0]] * 3] * 4)
    assert (image[mask == 0] == 50).all()  # the row of alpha 100 was cut off with the top


def test_scenes_use_every_category_and_skip_drawings_without_alpha_or_too_large(tmp_path):
    root = tmp_path / "png"
    _drawing(root / "cats" / "a.png", (250, 0, 0))
    _drawing(root / "dogs" / "deeper" / "b.png", (0, 250, 0))
    _drawing(root / "dogs" / "huge.png", (0, 0, 250), size=(60, 60))
    Image.new("RGB", (8, 8)).save(root / "cats" / "flat.png")
    drawings = openclipart.find_drawings(root, ("cats", "dogs"), max_pixels=1000)
    assert {p.name for paths in drawings.by_category.values() for p in paths} == {"a.png", "b.png"}
    assert sorted(reason.split(" ")[0] for reason in drawings.skipped.values()) == ["60x60", "no"]

    names = openclipart.write_scenes(tmp_path / "out", drawings, num_images=4, size=32, seed=1)
    assert names == ["background", "cats", "dogs"]
    seen = set()
    for index in range(4):
        image = np.asarray(Image.open(tmp_path / "out" / "images" / f"{index:05d}.png"))
        mask = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{index:05d}.png"))
        assert image.shape == (32, 32, 3) and mask.shape == (32, 32)
        seen |= set(np.unique(mask).tolist())
        # the drawings are red (cats) / green (dogs) at 250: a class pixel is over half
        # drawing (alpha > 128), so its channel is over 125 (bar resampling ripples)
        for class_id, channel in ((1, 0), (2, 1)):
            if (mask == class_id).any():
                assert (image[mask == class_id][:, channel] > 120).mean() > 0.97
    assert seen == {0, 1, 2}


def test_a_category_without_usable_drawings_is_an_error_naming_it(tmp_path):
    Image.new("RGB", (8, 8)).save(tmp_path / "x.png")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="'empty'"):
        openclipart.find_drawings(tmp_path, ("empty",))
    with pytest.raises(FileNotFoundError, match="missing"):
        openclipart.find_drawings(tmp_path, ("missing",))
