import numpy as np
import pytest
import tensorflow as tf

from visionpipe.models import data
from visionpipe.tasks.detection.box_augment import BoxAugmenter
from visionpipe.tasks import get_task
from visionpipe.core.config import AugmentConfig, PipelineConfig

from .scenes import COLOURS, detection_example, random_scene, scene

SIZE = 64
BOXES = [(4, 6, 20, 30), (30, 40, 58, 60), (40, 2, 52, 14)]


def _object_pixels_bbox(image: np.ndarray, colour) -> tuple:
    """Tight yxyx box of the pixels close to one object's colour (None if it left the image)."""
    mask = np.all(np.abs(image.astype(np.float32) - np.array(colour)) < 60, axis=-1)
    if not mask.any():
        return None
    rows, cols = np.nonzero(mask)
    return rows.min(), cols.min(), rows.max() + 1, cols.max() + 1


def _augment(cfg: AugmentConfig, repeats: int = 6, seed: int = 3):
    augmenter = BoxAugmenter(cfg, SIZE, seed=seed)
    image = scene(SIZE, BOXES).astype(np.float32)
    images = tf.constant(np.stack([image] * repeats))
    targets = {"boxes": tf.constant([BOXES] * repeats, tf.float32),
               "classes": tf.constant([[0, 1, 2]] * repeats, tf.float32)}
    out_images, out_targets = augmenter(images, targets)
    return augmenter, out_images.numpy(), out_targets["boxes"].numpy(), out_targets["classes"].numpy()


def _assert_boxes_cover_their_objects(images, boxes, classes, tolerance: float):
    checked = 0
    for image, image_boxes, image_classes in zip(images, boxes, classes):
        for box, label in zip(image_boxes, image_classes):
            if label < 0:
                continue
            pixels = _object_pixels_bbox(image, COLOURS[int(label)])
            assert pixels is not None, f"object {int(label)} has a box but no pixels"
            np.testing.assert_allclose(box, pixels, atol=tolerance)
            checked += 1
    assert checked > 0


def test_flips_move_each_box_onto_its_flipped_object():
    cfg = AugmentConfig(horizontal_flip=True, vertical_flip=True)
    _, images, boxes, classes = _augment(cfg, repeats=8)
    assert (boxes[:, 0] != np.array(BOXES[0], np.float32)).any(), "no flip happened in 8 draws"
    _assert_boxes_cover_their_objects(images, boxes, classes, tolerance=0.01)


def test_scale_jitter_crop_keeps_each_box_on_its_object():
    cfg = AugmentConfig(horizontal_flip=False, zoom=0.4)
    _, images, boxes, classes = _augment(cfg, repeats=8)
    moved = np.abs(boxes - np.array([BOXES] * 8, np.float32))[classes >= 0]
    assert moved.max() > 4, "the scale jitter did not move any box"
    # bilinear resampling smears an edge over about one pixel at up to 1.4x zoom
    _assert_boxes_cover_their_objects(images, boxes, classes, tolerance=2.0)


def test_translation_keeps_boxes_on_objects_and_counts_those_pushed_out():
    cfg = AugmentConfig(horizontal_flip=False, translation=0.9)
    augmenter, images, boxes, classes = _augment(cfg, repeats=16)
    _assert_boxes_cover_their_objects(images, boxes, classes, tolerance=1.5)
    report = augmenter.report()
    kept = int((classes >= 0).sum())
    assert report["boxes_in"] == 16 * 3
    assert report["boxes_dropped"] == 16 * 3 - kept
    assert report["boxes_dropped"] > 0


def test_photometric_changes_leave_boxes_unchanged():
    cfg = AugmentConfig(horizontal_flip=False, brightness=0.3, contrast=0.3, saturation=0.5, hue=0.1,
                        cutout=0.2)
    _, images, boxes, classes = _augment(cfg)
    np.testing.assert_array_equal(boxes, np.array([BOXES] * 6, np.float32))
    assert not np.allclose(images, scene(SIZE, BOXES)[None].astype(np.float32))


def test_mosaic_output_keeps_the_image_size_and_valid_boxes():
    augmenter = BoxAugmenter(AugmentConfig(horizontal_flip=False), SIZE, mosaic=True, seed=5)
    images = tf.constant(np.stack([scene(SIZE, BOXES).astype(np.float32)] * 4))
    targets = {"boxes": tf.constant([BOXES] * 4, tf.float32), "classes": tf.constant([[0, 1, 2]] * 4, tf.float32)}
    out_images, out = augmenter(images, targets)
    assert out_images.shape == (4, SIZE, SIZE, 3)
    valid = out["boxes"].numpy()[out["classes"].numpy() >= 0]
    assert len(valid) > 0
    assert (valid >= 0).all() and (valid <= SIZE).all()
    assert (valid[:, 2] - valid[:, 0] >= 2).all() and (valid[:, 3] - valid[:, 1] >= 2).all()


def test_occluders_cover_the_requested_share_of_each_box_and_nothing_else():
    from visionpipe.tasks.detection.evaluation import occlude

    images = np.zeros((1, SIZE, SIZE, 3), np.float32)
    boxes = np.array([[[0, 0, 40, 40], [44, 44, 64, 64], [-1, -1, -1, -1]]], np.float32)
    out = occlude(images, boxes, np.array([[0, 1, -1]]), 0.25, np.random.default_rng(0))
    covered = out[0, ..., 0] == 127.5
    assert covered[:40, :40].sum() == 20 * 20
    assert covered[44:, 44:].sum() == 10 * 10
    assert covered.sum() == 20 * 20 + 10 * 10


def _detection_batches(files, n, *, seed=11, mosaic=True):
    config = PipelineConfig(task="detection")
    config.model.image_size = 32
    config.detection.mosaic = mosaic
    config.augment = AugmentConfig(seed=seed, horizontal_flip=True, vertical_flip=True, zoom=0.3,
                                   translation=0.1, brightness=0.2, contrast=0.2, saturation=0.3,
                                   hue=0.1, cutout=0.2)
    task = get_task(config.validate(), ["red", "green"])
    dataset = data.make_dataset(files, task, 8, training=True, seed=3)
    return [(x.numpy(), y["boxes"].numpy(), y["classes"].numpy()) for x, y in dataset.take(n)]


@pytest.fixture(scope="module")
def scene_files(tmp_path_factory):
    rng = np.random.default_rng(0)
    path = str(tmp_path_factory.mktemp("scenes") / "train.gz")
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for _ in range(12):
            writer.write(detection_example(*random_scene(rng, 32, 2), ["red", "green"]))
    return [path]


def test_same_seed_gives_the_same_box_augmentation_over_epochs(scene_files):
    """Mosaic, flips, scale jitter, translation, photometric and cutout through data.make_dataset
    (parallel map); 6 batches of 8 are 4 epochs of the 12 scenes."""
    first = _detection_batches(scene_files, 6)
    second = _detection_batches(scene_files, 6)
    for a, b in zip(first, second):
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x, y)
    other = _detection_batches(scene_files, 6, seed=12)
    assert all(a[0].shape != b[0].shape or np.abs(a[0] - b[0]).max() > 1 for a, b in zip(first, other))


def test_each_epoch_moves_the_same_boxes_differently():
    config = PipelineConfig(task="detection")
    config.model.image_size = SIZE
    config.augment = AugmentConfig(horizontal_flip=True, vertical_flip=True, zoom=0.3, translation=0.1)
    task = get_task(config.validate(), ["a", "b", "c"])
    image = scene(SIZE, BOXES).astype(np.float32)
    batch = (tf.constant(np.stack([image] * 4)),
             {"boxes": tf.constant([BOXES] * 4, tf.float32), "classes": tf.constant([[0, 1, 2]] * 4, tf.float32),
              "image_shape": tf.constant([[SIZE, SIZE]] * 4)})
    epochs = [y["boxes"].numpy() for _, y in data.augment_batches(tf.data.Dataset.from_tensors(batch).repeat(3), task)]
    assert all(np.abs(epochs[0] - later).max() > 1 for later in epochs[1:])


def test_box_mode_at_a_non_square_size_keeps_each_box_on_its_object():
    """(height, width) = (32, 64): flips mirror x by the width and y by the height."""
    boxes = [(2, 4, 12, 20), (16, 40, 30, 60)]
    image = np.zeros((32, 64, 3), np.float32)
    for i, (ymin, xmin, ymax, xmax) in enumerate(boxes):
        image[ymin:ymax, xmin:xmax] = COLOURS[i]
    augmenter = BoxAugmenter(AugmentConfig(horizontal_flip=True, vertical_flip=True, zoom=0.2),
                             (32, 64), seed=4)
    out_images, out = augmenter(tf.constant(np.stack([image] * 8)),
                                {"boxes": tf.constant([boxes] * 8, tf.float32),
                                 "classes": tf.constant([[0, 1]] * 8, tf.float32)})
    assert out_images.shape == (8, 32, 64, 3)
    moved = out["boxes"].numpy()
    assert (np.abs(moved - np.array([boxes] * 8, np.float32)) > 1).any()
    _assert_boxes_cover_their_objects(out_images.numpy(), moved, out["classes"].numpy(), tolerance=2.0)
