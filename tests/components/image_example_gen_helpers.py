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


def blank_png(width: int, height: int) -> bytes:
    """A valid all-black 1-bit PNG of any size, written row by row: a 12000x12000 one is
    ~140 KB, and PIL would hold every pixel in memory to write it."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    row = b"\0" * (1 + (width + 7) // 8)  # filter byte + packed bits
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


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

    from visionpipe.core.features import parse_single

    files = sorted(glob.glob(os.path.join(examples_uri, f"Split-{split}", "data_tfrecord-*.gz")))
    assert files, f"no data_tfrecord-*.gz files in {examples_uri}/Split-{split}"
    dataset = tf.data.TFRecordDataset(files, compression_type="GZIP").map(parse_single)
    return [{k: v.numpy() for k, v in example.items()} for example in dataset]


def filenames(examples: List[dict]) -> List[str]:
    return sorted(e["image/filename"].decode() for e in examples)


def load_report(report_path: str) -> dict:
    return json.loads(Path(report_path).read_text())


def folder_config(path, **data):
    """A validated config whose data section reads ``path`` (any ``data.*`` override)."""
    from visionpipe.core.config import PipelineConfig

    config = PipelineConfig()
    config.data.source = data.pop("source", "folder")
    config.data.path = str(path)
    for key, value in data.items():
        setattr(config.data, key, value)
    return config.validate()


def write_voc(root: Path, images: Dict[str, List[tuple]], splits: Dict[str, List[str]],
              size=(40, 30), seed: int = 100) -> Path:
    """A Pascal VOC tree: ``images[id] = [(name, xmin, ymin, xmax, ymax), ...]``."""
    (root / "Annotations").mkdir(parents=True, exist_ok=True)
    (root / "ImageSets" / "Main").mkdir(parents=True, exist_ok=True)
    for i, (image_id, objects) in enumerate(sorted(images.items())):
        write_image(root / "JPEGImages" / f"{image_id}.jpg", seed + i, size, fmt="JPEG")
        xml_objects = "".join(
            f"<object><name>{name}</name><bndbox><xmin>{x0}</xmin><ymin>{y0}</ymin>"
            f"<xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox></object>"
            for name, x0, y0, x1, y1 in objects)
        (root / "Annotations" / f"{image_id}.xml").write_text(
            f"<annotation><filename>{image_id}.jpg</filename><size><width>{size[0]}</width>"
            f"<height>{size[1]}</height><depth>3</depth></size>{xml_objects}</annotation>")
    for split, ids in splits.items():
        (root / "ImageSets" / "Main" / f"{split}.txt").write_text("\n".join(ids) + "\n")
    return root
