"""ValidImage -> serialized tf.Example in the one VisionPipe feature spec (features.py)."""
from __future__ import annotations

from typing import Dict, List, Sequence

import visionpipe  # noqa: F401
from visionpipe.core import features as F
from visionpipe.components.image_example_gen.items import ValidImage


def image_labels(image: ValidImage, class_index: Dict[str, int]) -> List[str]:
    """The image-level labels; a detection image is labelled with the classes of its
    objects (in class-id order) so detection sources also serve multi-label tasks."""
    if image.labels:
        return list(image.labels)
    return sorted(set(image.object_labels), key=class_index.__getitem__)


def to_tf_example(image: ValidImage, class_names: Sequence[str]) -> bytes:
    import tensorflow as tf

    class_index = {name: i for i, name in enumerate(class_names)}

    def ints(values):
        return tf.train.Feature(int64_list=tf.train.Int64List(value=list(values)))

    def floats(values):
        return tf.train.Feature(float_list=tf.train.FloatList(value=list(values)))

    def strings(values):
        return tf.train.Feature(bytes_list=tf.train.BytesList(
            value=[v if isinstance(v, bytes) else v.encode("utf-8") for v in values]))

    labels = image_labels(image, class_index)
    feature = {
        F.ENCODED: strings([image.encoded]),
        F.FORMAT: strings([image.image_format]),
        F.HEIGHT: ints([image.height]),
        F.WIDTH: ints([image.width]),
        F.SOURCE_ID: strings([image.sha256]),
        F.FILENAME: strings([image.filename]),
        F.LABEL: ints(class_index[name] for name in labels),
        F.LABEL_TEXT: strings(labels),
    }
    if image.boxes:
        ymin, xmin, ymax, xmax = zip(*image.boxes)
        feature.update({
            F.BBOX_YMIN: floats(ymin), F.BBOX_XMIN: floats(xmin),
            F.BBOX_YMAX: floats(ymax), F.BBOX_XMAX: floats(xmax),
            F.OBJECT_LABEL: ints(class_index[name] for name in image.object_labels),
            F.OBJECT_TEXT: strings(image.object_labels),
        })
    if image.masks:
        feature[F.OBJECT_MASK] = strings(image.masks)
    if image.text is not None:
        feature[F.TEXT] = strings([image.text])
    if image.group_id is not None:
        feature[F.GROUP_ID] = strings([image.group_id])
    if image.segmentation_mask is not None:
        feature[F.SEGMENTATION_MASK] = strings([image.segmentation_mask])
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()
