"""``visionpipe explain``: Grad-CAM overlays for an exported classifier, written at each image's
own size; input a user can fix is one line on stderr naming the flag or file, exit 2."""
import io
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from visionpipe.cli.main import main


def _png(path: Path, size=(24, 40), seed=0) -> Path:
    pixels = np.random.default_rng(seed).integers(0, 256, (*size, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    path.write_bytes(buffer.getvalue())
    return path


@pytest.fixture(scope="module")
def toy_export(tmp_path_factory):
    from tests.support.toy_model import write_toy_classifier

    return write_toy_classifier(tmp_path_factory.mktemp("explain") / "1", image_size=32,
                                conv_filters=4)


def _one_error_line(capsys, *fragments):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    for fragment in fragments:
        assert fragment in err[0], err[0]


@pytest.mark.parametrize("method", ["gradcam", "occlusion"])
def test_explain_writes_one_overlay_per_image_at_its_own_size(toy_export, tmp_path, capsys,
                                                               method):
    images = [_png(tmp_path / "wide.png", (24, 40)), _png(tmp_path / "square.png", (32, 32), 1)]
    out = tmp_path / "out"
    assert main(["explain", "--model", str(toy_export), "--method", method,
                 "--output_dir", str(out), *map(str, images)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 2
    for image, line in zip(images, lines):
        written = out / f"{image.stem}_{method}.png"
        assert line.startswith(f"{image}: ") and str(written) in line
        assert line.split(": ")[1].split()[0] in ("cat", "dog", "bird")
        overlay = np.asarray(Image.open(written))
        original = np.asarray(Image.open(image))
        assert overlay.shape == original.shape
        assert not np.array_equal(overlay, original)


def test_explain_a_named_class_and_layer(toy_export, tmp_path, capsys):
    image = _png(tmp_path / "a.png")
    assert main(["explain", "--model", str(toy_export), "--class", "bird", "--layer", "conv1",
                 "--output_dir", str(tmp_path), str(image)]) == 0
    assert capsys.readouterr().out.startswith(f"{image}: bird ")


@pytest.mark.parametrize("args, fragments", [
    (["--model", "{tmp}/nowhere"], ["visionpipe explain: error: --model", "no saved_model.pb"]),
    (["--model", "{model}", "--class", "horse"], ["--class 'horse': not a class of the model"]),
    (["--model", "{model}", "--layer", "conv9"], ["--layer 'conv9': no such layer"]),
])
def test_a_bad_model_class_or_layer_is_one_line_naming_the_flag(toy_export, tmp_path, capsys,
                                                                args, fragments):
    image = _png(tmp_path / "a.png")
    argv = [a.format(tmp=tmp_path, model=toy_export) for a in args]
    assert main(["explain", *argv, "--output_dir", str(tmp_path), str(image)]) == 2
    _one_error_line(capsys, *fragments)


def test_a_missing_or_undecodable_image_is_one_line_naming_the_file(toy_export, tmp_path, capsys):
    assert main(["explain", "--model", str(toy_export), str(tmp_path / "gone.png")]) == 2
    _one_error_line(capsys, "image not found", "gone.png")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    assert main(["explain", "--model", str(toy_export), str(text)]) == 2
    _one_error_line(capsys, "notes.png: not a decodable image")
