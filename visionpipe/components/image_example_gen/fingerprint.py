"""A fingerprint of a source's files (path, size, mtime), so a TFX cache hit means the
same data, not just the same config. Like TFX ExampleGen's span fingerprint, it reads only
file metadata, never contents."""
from __future__ import annotations

import hashlib
import posixpath
from typing import Iterator, List

from visionpipe.core.config import DataConfig


def _tree(root: str) -> Iterator[str]:
    import tensorflow as tf

    if not tf.io.gfile.isdir(root):
        return
    for dirpath, _, filenames in tf.io.gfile.walk(root):
        for name in filenames:
            yield posixpath.join(dirpath, name)


def source_files(data: DataConfig) -> List[str]:
    import dataclasses

    if len(data.span_paths) > 1:  # a window of spans
        return [f for path in data.span_paths
                for f in source_files(dataclasses.replace(data, path=path, span_paths=[]))]
    return _source_files(data)


def _source_files(data: DataConfig) -> List[str]:
    import tensorflow as tf

    if data.source in ("folder", "voc", "mask_folder"):
        return list(_tree(data.path))
    if data.source in ("csv", "coco"):
        files = [data.path] if tf.io.gfile.exists(data.path) else []
        return files + list(_tree(data.images_dir or posixpath.dirname(data.path)))
    if data.source == "tfrecord":
        return tf.io.gfile.glob(data.path)
    if data.source == "tfds":
        return list(_tree(posixpath.join(data.tfds_data_dir, data.tfds_name.split(":")[0])))
    return []


def input_fingerprint(data: DataConfig) -> str:
    import tensorflow as tf

    digest, total_bytes = hashlib.sha256(), 0
    files = sorted(set(source_files(data)))
    for path in files:
        stat = tf.io.gfile.stat(path)
        total_bytes += stat.length
        digest.update(f"{path}\t{stat.length}\t{stat.mtime_nsec}\n".encode())
    return f"files:{len(files)},bytes:{total_bytes},sha256:{digest.hexdigest()}"
