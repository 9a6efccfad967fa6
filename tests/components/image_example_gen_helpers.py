"""Tiny image fixtures and readers for the ImageExampleGen tests."""
from __future__ import annotations

import glob
import io
import json
import os
from pathlib import Path
from typing import Dict, List

import numpy as np
from PIL import Image

import visionpipe  # noqa: F401


def image_bytes(seed: int, size=(32, 24), fmt: str = "PNG") -> bytes:
    """A small image whose bytes are unique per seed."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format=fmt)
    return buffer.getvalue()


def write_image(path: Path, seed: int, size=(32, 24), fmt: str = "PNG") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(image_bytes(seed, size, fmt))
    return path


def write_folder_tree(root: Path, counts: Dict[str, int], split: str = "", seed: int = 0) -> int:
    """``root/[split/]<class>/<i>.png`` with ``counts[class]`` images; returns the next seed."""
    for label, count in counts.items():
        for i in range(count):
            write_image(root / split / label / f"{label}_{i}.png", seed)
            seed += 1
    return seed


def read_examples(examples_uri: str, split: str) -> List[dict]:
    """Every Example of a split, parsed with the project's one feature spec (numpy values)."""
    import tensorflow as tf

    from visionpipe.features import parse_single

    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no data_tfrecord-*.gz files in {examples_uri}/Split-{split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(parse_single)
    return [{k: v.numpy() for k, v in example.items()} for example in dataset]


def filenames(examples: List[dict]) -> List[str]:
    return sorted(e["image/filename"].decode() for e in examples)


def load_report(report_path: str) -> dict:
    return json.loads(Path(report_path).read_text())
