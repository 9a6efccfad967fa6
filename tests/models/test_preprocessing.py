"""The target transforms of the one preprocessing function: boxes scale per axis, masks resize
nearest-neighbour (class ids are never blended), text passes through."""
import io

import numpy as np
import tensorflow as tf
from PIL import Image

from visionpipe.models import preprocessing


def _png(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_resized_mask_holds_only_the_ids_of_the_original():
    rng = np.random.default_rng(0)
    mask = rng.choice(np.array([0, 3, 7, 255], np.uint8), size=(37, 53))
    for size in ((32, 48), (80, 24), 16):
        resized = preprocessing.resize_mask(mask, size).numpy()
        assert resized.shape == preprocessing.hw(size) and resized.dtype == np.uint8
        assert set(np.unique(resized)) <= {0, 3, 7, 255}
    # bilinear would blend a 0|7 edge into 1..6; nearest keeps the two ids and the edge
    edge = np.zeros((8, 8, 1), np.int32)
    edge[:, 4:] = 7
    up = preprocessing.resize_mask(edge, (16, 32)).numpy()[..., 0]
    assert up.shape == (16, 32) and set(np.unique(up)) == {0, 7}
    assert (up[:, :16] == 0).all() and (up[:, 16:] == 7).all()


def test_boxes_scale_by_height_and_width_and_back():
    boxes = tf.constant([[0.25, 0.5, 0.75, 1.0]])
    pixels = preprocessing.scale_boxes(boxes, (32, 128))
    np.testing.assert_allclose(pixels, [[8, 64, 24, 128]])
    np.testing.assert_allclose(preprocessing.normalize_boxes(pixels, (32, 128)), boxes)
    np.testing.assert_allclose(preprocessing.scale_boxes(boxes, 64), [[16, 32, 48, 64]])


def test_preprocess_example_moves_boxes_and_mask_with_the_image_and_passes_text_through():
    image = np.zeros((40, 60, 3), np.uint8)
    image[10:30, 15:45] = 200
    mask = np.zeros((40, 60), np.uint8)
    mask[10:30, 15:45] = 2
    text = tf.constant("VP-1234")
    out = preprocessing.preprocess_example(
        tf.constant(_png(image)), (32, 48), boxes=tf.constant([[0.25, 0.25, 0.75, 0.75]]),
        mask=tf.constant(_png(mask)), text=text)
    assert out["images"].shape == (32, 48, 3) and out["images"].dtype == tf.float32
    assert out["image_shape"].numpy().tolist() == [40, 60]
    np.testing.assert_allclose(out["boxes"], [[8, 12, 24, 36]])
    masks = out["segmentation_masks"].numpy()
    assert masks.shape == (32, 48, 1) and masks.dtype == np.int32
    assert set(np.unique(masks)) == {0, 2}
    # the mask covers the object's pixels in the resized image, and only them
    bright = out["images"].numpy()[..., 0] > 100
    assert (bright == (masks[..., 0] == 2)).mean() > 0.97
    assert out["text"] is text
