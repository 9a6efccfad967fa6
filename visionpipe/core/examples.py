"""The Examples artifact contract: what ImageExampleGen writes and every reader relies on.

``<uri>/Split-<name>/data_tfrecord-*.gz`` (gzip TFRecords of ``core.features`` tf.Examples) and
``<uri>/class_names.json`` (the class names, index = label id).
"""
from __future__ import annotations

import json
import posixpath
from typing import List, Optional, Sequence

CLASS_NAMES_FILENAME = "class_names.json"
EXAMPLES_FILE_PREFIX = "data_tfrecord"
COMPRESSION = "GZIP"


def split_dir(examples_uri: str, split: str) -> str:
    return posixpath.join(examples_uri, f"Split-{split}")


def expand_patterns(patterns: Sequence[str]) -> List[str]:
    """TFX hands Trainer glob patterns; expand them (sorted, so runs are reproducible)."""
    import tensorflow as tf

    files: List[str] = []
    for pattern in patterns:
        files.extend(sorted(tf.io.gfile.glob(pattern)))
    if not files:
        raise FileNotFoundError(f"no Examples files match {list(patterns)}")
    return files


def split_files(examples_uri: str, split: str) -> List[str]:
    """The files of one split; a missing or empty split is an error naming it."""
    return expand_patterns([posixpath.join(split_dir(examples_uri, split), "*")])


def optional_split_files(examples_uri: str, split: str) -> Optional[List[str]]:
    """The files of one split, or None when the Examples have no such split."""
    import tensorflow as tf

    return sorted(tf.io.gfile.glob(posixpath.join(split_dir(examples_uri, split), "*"))) or None


def examples_uri_of(file_patterns: Sequence[str]) -> str:
    """``<uri>/Split-train/*`` -> ``<uri>``"""
    return posixpath.dirname(posixpath.dirname(file_patterns[0]))


def records(files: Sequence[str]):
    """The serialized tf.Examples of ``files`` as a tf.data.Dataset."""
    import tensorflow as tf

    return tf.data.TFRecordDataset(list(files), compression_type=COMPRESSION)


def write_class_names(examples_uri: str, names: Sequence[str]) -> str:
    import tensorflow as tf

    path = posixpath.join(examples_uri, CLASS_NAMES_FILENAME)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(list(names), f)
    return path


def read_class_names(examples_uri: str) -> List[str]:
    """The class names (index = label id) of an Examples artifact written by ImageExampleGen."""
    import tensorflow as tf

    path = posixpath.join(examples_uri, CLASS_NAMES_FILENAME)
    if not tf.io.gfile.exists(path):
        raise FileNotFoundError(f"{path} not found: {examples_uri} was not written by ImageExampleGen")
    with tf.io.gfile.GFile(path, "r") as f:
        names = json.load(f)
    if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
        raise ValueError(f"{path}: expected a JSON list of class names")
    return names
