"""The one feature spec of VisionPipe's Examples, shared by every task.

| key                              | type          | meaning                                        |
|----------------------------------|---------------|------------------------------------------------|
| image/encoded                    | bytes         | the original encoded image (JPEG, PNG, ...)    |
| image/format                     | bytes         | 'jpeg', 'png', 'gif', 'bmp'                     |
| image/height, image/width        | int64         | decoded size in pixels                         |
| image/source_id                  | bytes         | sha256 of the encoded bytes (hex)              |
| image/filename                   | bytes         | path of the image relative to its source      |
| image/group_id                   | bytes         | group (video, patient, sequence id); optional  |
| image/class/label                | int64 list    | class id(s); several for multi-label          |
| image/class/text                 | bytes list    | class name(s), same order                      |
| image/object/bbox/xmin|ymin|...  | float list    | boxes, normalised to [0, 1]                    |
| image/object/class/label         | int64 list    | class id per box                               |
| image/object/class/text          | bytes list    | class name per box                             |
| image/object/mask                | bytes list    | PNG instance mask per box (0/255)              |
| image/segmentation/mask          | bytes         | PNG semantic mask (class id per pixel)        |
| image/object/track_id            | int64 list    | track id per box (video)                       |
| image/text                       | bytes         | transcription (OCR)                            |
"""
import os

os.environ["TF_USE_LEGACY_KERAS"] = "1"

ENCODED = "image/encoded"
FORMAT = "image/format"
HEIGHT = "image/height"
WIDTH = "image/width"
SOURCE_ID = "image/source_id"
FILENAME = "image/filename"
GROUP_ID = "image/group_id"
LABEL = "image/class/label"
LABEL_TEXT = "image/class/text"
BBOX_XMIN = "image/object/bbox/xmin"
BBOX_YMIN = "image/object/bbox/ymin"
BBOX_XMAX = "image/object/bbox/xmax"
BBOX_YMAX = "image/object/bbox/ymax"
BBOX_KEYS = (BBOX_YMIN, BBOX_XMIN, BBOX_YMAX, BBOX_XMAX)
OBJECT_LABEL = "image/object/class/label"
OBJECT_TEXT = "image/object/class/text"
OBJECT_MASK = "image/object/mask"
SEGMENTATION_MASK = "image/segmentation/mask"
TRACK_ID = "image/object/track_id"
TEXT = "image/text"

IMAGE_FORMATS = ("jpeg", "png", "gif", "bmp")


def parse_spec():
    """tf.io parsing spec for every key (lists are VarLen; absent keys parse empty)."""
    import tensorflow as tf

    spec = {
        ENCODED: tf.io.FixedLenFeature([], tf.string),
        FORMAT: tf.io.FixedLenFeature([], tf.string, default_value=""),
        HEIGHT: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        WIDTH: tf.io.FixedLenFeature([], tf.int64, default_value=0),
        SOURCE_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        FILENAME: tf.io.FixedLenFeature([], tf.string, default_value=""),
        GROUP_ID: tf.io.FixedLenFeature([], tf.string, default_value=""),
        SEGMENTATION_MASK: tf.io.FixedLenFeature([], tf.string, default_value=""),
        TEXT: tf.io.FixedLenFeature([], tf.string, default_value=""),
    }
    for key in (LABEL, OBJECT_LABEL, TRACK_ID):
        spec[key] = tf.io.VarLenFeature(tf.int64)
    for key in (LABEL_TEXT, OBJECT_TEXT, OBJECT_MASK):
        spec[key] = tf.io.VarLenFeature(tf.string)
    for key in BBOX_KEYS:
        spec[key] = tf.io.VarLenFeature(tf.float32)
    return spec


def _parse(parse_fn, serialized, keys):
    import tensorflow as tf

    spec = parse_spec()
    if keys is not None:
        spec = {k: spec[k] for k in keys}
    parsed = parse_fn(serialized, spec)
    return {k: tf.sparse.to_dense(v) if isinstance(v, tf.SparseTensor) else v
            for k, v in parsed.items()}


def parse_examples(serialized, keys=None):
    """Parse a batch of serialized tf.Examples; sparse lists become dense (padded)."""
    import tensorflow as tf

    return _parse(tf.io.parse_example, serialized, keys)


def parse_single(serialized, keys=None):
    """Parse one serialized tf.Example (for tf.data map before batching)."""
    import tensorflow as tf

    return _parse(tf.io.parse_single_example, serialized, keys)
