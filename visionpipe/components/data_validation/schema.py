"""The data schema of VisionPipe Examples and the statistics options that go with it.

The schema is curated from the one feature spec (``visionpipe.core.features``), not inferred:
an inferred schema learns whatever the first data happened to contain (on a few dozen
images it even turns every filename into an allowed value), so it cannot catch a class
that should not exist. ``curated_schema`` declares every key ImageExampleGen may write,
which of them every Example must have, the image domain of the encoded bytes, the allowed
formats, and -- when the classes are known -- the label domains. Write it with
``write_schema`` and give the file to ``ImportSchemaGen``, or edit it and keep it in the
repository, as TFX recommends for a schema that gates production data.
"""
from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Optional, Sequence

import visionpipe  # noqa: F401
from visionpipe.core import features as F
from visionpipe.core.registry import task_class

_OBJECT_FLOAT_KEYS = F.BBOX_KEYS
_OPTIONAL_BYTES_KEYS = (F.OBJECT_MASK, F.SEGMENTATION_MASK, F.TEXT, F.GROUP_ID)
# PNG masks are images too: TFDV's image statistics recognise them, so the schema says so.
_MASK_KEYS = (F.OBJECT_MASK, F.SEGMENTATION_MASK)


def _schema_pb2():
    from tensorflow_metadata.proto.v0 import schema_pb2

    return schema_pb2


def image_feature_schema():
    """A schema that only declares the image features (``image/encoded``, the PNG masks).

    Given to TFDV as ``StatsOptions.schema`` it makes the statistics treat the encoded
    bytes as bytes (sizes only) instead of as strings, whose top-k values would copy whole
    images into the statistics.
    """
    schema_pb2 = _schema_pb2()
    schema = schema_pb2.Schema()
    for key in (F.ENCODED, *_MASK_KEYS):
        schema.feature.add(name=key, type=schema_pb2.BYTES).image_domain.SetInParent()
    return schema


def image_stats_options(schema=None, semantic_sample_rate: Optional[float] = None):
    """``tfdv.StatsOptions`` for StatisticsGen on VisionPipe Examples.

    Semantic-domain statistics add, for ``image/encoded``, the image-format histogram and
    the ``image_domain`` marker that SchemaGen and ExampleValidator read. TFDV alone only
    emits them once a split holds at least 100 images; ``statistics_gen.ImageStatisticsGen``
    (what ``validation_components`` uses) emits them for a split of any size.
    ``image/height`` and ``image/width`` are ordinary int features, so their distributions
    come with the basic statistics.
    ``semantic_sample_rate`` (0, 1] bounds the decode cost on large datasets.
    """
    import tensorflow_data_validation as tfdv

    return tfdv.StatsOptions(schema=schema if schema is not None else image_feature_schema(),
                             enable_semantic_domain_stats=True,
                             semantic_domain_stats_sample_rate=semantic_sample_rate)


def curated_schema(task: str, class_names: Sequence[str] = (),
                   max_image_bytes: int = 0, max_image_side: int = 0,
                   allow_unlabeled: bool = False):
    """The schema every VisionPipe Example of ``task`` must satisfy.

    Required in every Example: encoded image (image domain; all of it must be a supported
    format), format (one of ``features.IMAGE_FORMATS``), height and width (>= 1), source id
    and filename. Image-level labels as the task declares (``Task.image_labels``): exactly one
    ("single"), at least one ("multi"; none with ``allow_unlabeled``: such an image is a
    negative), or any number (""). With ``class_names``, ``image/class/text`` and
    ``image/object/class/text`` may only hold those names and the integer labels must lie in
    ``[0, len(class_names) - 1]``. Boxes must lie in [0, 1]. ``max_image_bytes`` and
    ``max_image_side`` (0: no limit) bound image size.
    """
    schema_pb2 = _schema_pb2()
    class_names = list(class_names)
    if len(set(class_names)) != len(class_names):
        raise ValueError(f"class_names repeat: {class_names}")
    schema = schema_pb2.Schema()

    def add(name, kind, required=False, min_values=None, max_values=None):
        feature = schema.feature.add(name=name, type=kind)
        if required:
            feature.presence.min_fraction = 1.0
            feature.presence.min_count = 1
        else:
            feature.presence.min_count = 0
        if min_values is not None:
            feature.value_count.min = min_values
        if max_values is not None:
            feature.value_count.max = max_values
        return feature

    encoded = add(F.ENCODED, schema_pb2.BYTES, True, 1, 1)
    encoded.image_domain.minimum_supported_image_fraction = 1.0
    if max_image_bytes:
        encoded.image_domain.max_image_byte_size = int(max_image_bytes)
    image_format = add(F.FORMAT, schema_pb2.BYTES, True, 1, 1)
    image_format.string_domain.value.extend(F.IMAGE_FORMATS)
    for key in (F.HEIGHT, F.WIDTH):
        side = add(key, schema_pb2.INT, True, 1, 1)
        side.int_domain.min = 1
        if max_image_side:
            side.int_domain.max = int(max_image_side)
    add(F.SOURCE_ID, schema_pb2.BYTES, True, 1, 1)
    add(F.FILENAME, schema_pb2.BYTES, True, 1, 1)

    image_labels = task_class(task).image_labels
    needs_labels = bool(image_labels) and not (image_labels == "multi" and allow_unlabeled)
    single_label = image_labels == "single"
    max_labels = 1 if single_label else (len(class_names) or None)
    label = add(F.LABEL, schema_pb2.INT, needs_labels, 1 if needs_labels else 0, max_labels)
    label_text = add(F.LABEL_TEXT, schema_pb2.BYTES, needs_labels, 1 if needs_labels else 0,
                     max_labels)
    object_label = add(F.OBJECT_LABEL, schema_pb2.INT)
    object_text = add(F.OBJECT_TEXT, schema_pb2.BYTES)
    if class_names:
        for feature in (label, object_label):
            feature.int_domain.min = 0
            feature.int_domain.max = len(class_names) - 1
        for feature in (label_text, object_text):
            feature.string_domain.value.extend(class_names)
    else:
        for feature in (label, object_label):
            feature.int_domain.min = 0
    for key in _OBJECT_FLOAT_KEYS:
        box_side = add(key, schema_pb2.FLOAT)
        box_side.float_domain.min = 0.0
        box_side.float_domain.max = 1.0
    add(F.TRACK_ID, schema_pb2.INT)
    for key in _OPTIONAL_BYTES_KEYS:
        feature = add(key, schema_pb2.BYTES)
        if key in _MASK_KEYS:
            feature.image_domain.SetInParent()
    return schema


def schema_text(schema) -> str:
    from google.protobuf import text_format

    return text_format.MessageToString(schema)


def write_schema(schema, path) -> str:
    """Write ``schema`` as text proto (the format ImportSchemaGen reads)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(schema_text(schema))
    return str(path)


def write_content_addressed_schema(schema, directory) -> str:
    """Write ``schema`` to ``<directory>/schema-<hash>.pbtxt`` and return the path.

    ImportSchemaGen's cache key is the file path, not its content, so a schema that changes
    (new classes) must get a new path or a cached run would keep the old one.
    """
    text = schema_text(schema)
    digest = hashlib.sha256(text.encode()).hexdigest()[:12]
    path = Path(directory) / f"schema-{digest}.pbtxt"
    if not path.is_file() or path.read_text() != text:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return str(path)


def load_schema(path):
    """Read a text-proto schema, naming the file when it does not parse."""
    from google.protobuf import text_format

    schema_pb2 = _schema_pb2()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"schema file not found: {path}")
    try:
        return text_format.Parse(path.read_text(), schema_pb2.Schema())
    except text_format.ParseError as err:
        raise ValueError(f"{path}: not a valid schema text proto: {err}") from None
