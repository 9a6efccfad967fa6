"""The segmentation task's own pieces, on hand-made numbers and 32 px models: losses leave
ignored pixels out, scores come from a confusion matrix, the trivial floor is the training
majority class, masks move with their images (nearest, ids kept), every architecture gives
[B, h, w, C], serving_default answers at each image's own size and its PNG is the same map."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

import visionpipe  # noqa: F401
import tensorflow as tf

from visionpipe.core.config import load_config
from visionpipe.tasks.segmentation import evaluation, losses

CLASSES = ["background", "circle", "square"]


def seg_config(*overrides):
    return load_config(overrides=["task=segmentation", "model.image_size=32", "model.width=4",
                                  "segmentation.width=4", "segmentation.depth=3",
                                  "segmentation.head_channels=8", *overrides]).validate()


def seg_task(*overrides, classes=CLASSES):
    from visionpipe.tasks import get_task

    return get_task(seg_config(*overrides), classes)


# --- losses ---------------------------------------------------------------------------------

def test_cross_entropy_counts_only_pixels_that_are_not_ignored():
    truth = tf.constant([[[0], [1]], [[255], [255]]])  # [1?] -> one image 2x2 below
    truth = tf.reshape(tf.constant([0, 1, 255, 255]), [1, 2, 2, 1])
    probs = tf.reshape(tf.constant([[0.5, 0.5], [0.25, 0.75], [0.99, 0.01], [0.01, 0.99]]), [1, 2, 2, 2])
    expected = -(np.log(0.5) + np.log(0.75)) / 2  # the two valid pixels only
    got = losses.cross_entropy(truth, probs, 2, ignore_index=255)
    assert float(got) == pytest.approx(expected, rel=1e-5)
    # whatever the model says on the ignored pixels, the loss does not move
    other = tf.reshape(tf.constant([[0.5, 0.5], [0.25, 0.75], [0.01, 0.99], [0.99, 0.01]]), [1, 2, 2, 2])
    assert float(losses.cross_entropy(truth, other, 2)) == pytest.approx(expected, rel=1e-5)


def test_class_weights_make_a_weighted_mean_over_valid_pixels():
    truth = tf.reshape(tf.constant([0, 1, 255]), [1, 1, 3, 1])
    probs = tf.reshape(tf.constant([[0.5, 0.5], [0.25, 0.75], [0.5, 0.5]]), [1, 1, 3, 2])
    got = losses.cross_entropy(truth, probs, 2, 255, class_weights=[1.0, 3.0])
    expected = (1 * -np.log(0.5) + 3 * -np.log(0.75)) / 4
    assert float(got) == pytest.approx(expected, rel=1e-5)


def test_focal_loss_is_cross_entropy_times_the_modulating_factor_on_valid_pixels():
    truth = tf.reshape(tf.constant([1, 255]), [1, 1, 2, 1])
    probs = tf.reshape(tf.constant([[0.2, 0.8], [0.9, 0.1]]), [1, 1, 2, 2])
    got = losses.focal(truth, probs, 2, 255, gamma=2.0)
    assert float(got) == pytest.approx(-(0.2 ** 2) * np.log(0.8), rel=1e-4)


def test_dice_loss_ignores_ignored_pixels_and_is_zero_for_a_perfect_prediction():
    truth = tf.reshape(tf.constant([0, 1, 255, 255]), [1, 2, 2, 1])
    perfect = tf.reshape(tf.constant([[1.0, 0.0], [0.0, 1.0], [0.0, 1.0], [1.0, 0.0]]), [1, 2, 2, 2])
    assert float(losses.dice(truth, perfect, 2, 255)) == pytest.approx(0.0, abs=1e-5)
    # class 0: intersection 1, sizes 1 + 1; class 1: intersection 0.5, sizes 1 + 0.5 (+1 smoothing)
    half = tf.reshape(tf.constant([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0], [0.0, 1.0]]), [1, 2, 2, 2])
    expected = 1 - np.mean([(2 * 1.5 + 1) / (3 + 1), (2 * 0.5 + 1) / (2 + 1)])
    expected = 1 - np.mean([(2 * 1 + 1) / (1 + 1.5 + 1), (2 * 0.5 + 1) / (1 + 0.5 + 1)])
    assert float(losses.dice(truth, half, 2, 255)) == pytest.approx(expected, rel=1e-5)


# --- scores ---------------------------------------------------------------------------------

def test_miou_and_per_class_iou_come_from_the_confusion_and_skip_absent_classes():
    truth = np.array([[0, 0, 1, 1], [0, 0, 1, 255]])
    predicted = np.array([[0, 1, 1, 1], [0, 0, 0, 2]])
    matrix = evaluation.confusion(truth, predicted, 4, ignore_index=255)
    assert matrix.tolist() == [[3, 1, 0, 0], [1, 2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0]]
    metrics = evaluation.metrics_from_confusion(matrix, ["bg", "a", "b", "c"])
    assert metrics["iou/bg"] == pytest.approx(3 / 5)
    assert metrics["iou/a"] == pytest.approx(2 / 4)
    # class c is in neither truth nor prediction: no entry, not in the mean
    assert "iou/b" not in metrics and "iou/c" not in metrics
    assert metrics["miou"] == pytest.approx((3 / 5 + 2 / 4) / 2)
    assert metrics["pixel_accuracy"] == pytest.approx(5 / 7)
    assert metrics["dice"] == pytest.approx((6 / 8 + 4 / 6) / 2)
    assert metrics["num_pixels"] == 7


def test_a_class_only_predicted_counts_with_iou_zero():
    metrics = evaluation.metrics_from_confusion(
        evaluation.confusion(np.array([0, 0]), np.array([0, 1]), 2), ["bg", "a"])
    assert metrics["iou/a"] == 0.0 and metrics["miou"] == pytest.approx((0.5 + 0.0) / 2)


def test_a_mask_id_beyond_the_classes_is_an_error_not_silently_dropped():
    with pytest.raises(ValueError, match="neither a class id"):
        evaluation.confusion(np.array([0, 7]), np.array([0, 0]), 2)


def _examples_file(path, masks):
    from visionpipe.core import features as F

    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for mask in masks:
            image = io.BytesIO()
            Image.fromarray(np.zeros((*mask.shape, 3), np.uint8)).save(image, format="PNG")
            png = io.BytesIO()
            Image.fromarray(mask.astype(np.uint8), mode="L").save(png, format="PNG")
            feature = {F.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image.getvalue()])),
                       F.SEGMENTATION_MASK: tf.train.Feature(bytes_list=tf.train.BytesList(value=[png.getvalue()]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return [str(path)]


def test_trivial_floor_predicts_the_training_pixels_majority_class(tmp_path):
    task = seg_task()
    # training pixels: 10 of class 1, 6 of class 0, 4 ignored
    train = _examples_file(tmp_path / "train.tfrecord.gz", [
        np.array([[1, 1, 1, 1, 1], [1, 1, 1, 1, 1], [0, 0, 0, 0, 0], [0, 255, 255, 255, 255]])])
    # eval: mostly class 0 (the eval majority is not the floor's choice)
    eval_ = _examples_file(tmp_path / "eval.tfrecord.gz", [np.array([[0, 0, 0], [1, 2, 255]])])
    metrics = task.trivial_metrics(eval_, train)
    assert metrics["majority_class"] == "circle"
    # prediction all 1: class 1 IoU 1/5, classes 0 and 2 IoU 0 (in the truth)
    assert metrics["iou/circle"] == pytest.approx(1 / 5)
    assert metrics["miou"] == pytest.approx((0 + 1 / 5 + 0) / 3)
    assert metrics["pixel_accuracy"] == pytest.approx(1 / 5)


# --- masks follow the image -----------------------------------------------------------------

def test_a_mask_moves_with_its_image_under_a_geometric_augmentation_and_keeps_its_ids():
    task = seg_task("augment.enabled=true", "augment.horizontal_flip=true", "augment.rotation=0.1",
                    "augment.brightness=0.0", "augment.contrast=0.0")
    ids = np.zeros((2, 32, 32, 1), np.int32)
    ids[:, 4:14, 2:12] = 1
    ids[:, 18:30, 20:30] = 2
    ids[:, 0:2, :] = 255
    # the image encodes the mask: a pixel's value is 100 * its id (ignored: 250)
    images = tf.constant(np.where(ids == 255, 250, ids * 100).repeat(3, -1).astype(np.float32))
    out_images, out_masks = task.augment_batch(images, tf.constant(ids), tf.constant([3, 4], tf.int64))
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert out_masks.shape == ids.shape and out_masks.dtype == ids.dtype
    assert set(np.unique(out_masks)) <= {0, 1, 2, 255}  # nearest: never a blended id
    assert not np.array_equal(out_masks, ids)  # it moved
    # where the image is clearly one id's value, the mask says that id
    for value, class_id in ((0, 0), (100, 1), (200, 2)):
        sure = np.abs(out_images[..., 0] - value) < 1
        assert sure.sum() > 20
        assert np.mean(out_masks[..., 0][sure] == class_id) > 0.97, (value, class_id)


def test_the_tasks_mask_resize_keeps_ids_while_a_bilinear_resize_would_blend_them():
    from visionpipe.core import features as F

    task = seg_task()
    mask = np.zeros((50, 50), np.uint8)
    mask[:, 23:] = 2  # ids 0 and 2: a blend would invent values between them at the edge
    png, image = io.BytesIO(), io.BytesIO()
    Image.fromarray(mask, mode="L").save(png, format="PNG")
    Image.fromarray(np.zeros((50, 50, 3), np.uint8)).save(image, format="PNG")
    _, target = task.example_to_inputs({F.ENCODED: tf.constant(image.getvalue()),
                                        F.SEGMENTATION_MASK: tf.constant(png.getvalue())})
    assert target.shape == (32, 32, 1) and target.dtype == tf.int32
    assert set(np.unique(target.numpy())) == {0, 2}
    bilinear = tf.image.resize(mask[..., None].astype(np.float32), [32, 32], method="bilinear")
    blended = set(np.unique(bilinear.numpy()).tolist()) - {0.0, 2.0}
    assert blended, "a bilinear resize would blend ids into values that are no id of the mask"


def test_train_crops_cut_the_same_window_of_image_and_mask_and_differ_per_image():
    task = seg_task("augment.enabled=false", "segmentation.train_crop=16")
    # every pixel's value is unique: the image encodes its own (row, column)
    ids = (np.arange(32 * 32).reshape(1, 32, 32, 1) % 200).repeat(4, 0).astype(np.int32)
    images = tf.constant(np.arange(32 * 32, dtype=np.float32).reshape(1, 32, 32, 1).repeat(4, 0).repeat(3, -1))
    out_images, out_masks = task.augment_batch(images, tf.constant(ids), tf.constant([3, 4], tf.int64))
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert out_images.shape == (4, 16, 16, 3) and out_masks.shape == (4, 16, 16, 1)
    np.testing.assert_array_equal(out_images[..., :1].astype(np.int32) % 200, out_masks)
    corners = {int(v) for v in out_images[:, 0, 0, 0]}
    assert len(corners) > 1  # not one window for the whole batch
    for image in out_images[..., 0]:  # a contiguous window: rows step by 32, columns by 1
        np.testing.assert_array_equal(np.diff(image, axis=0), 32)
        np.testing.assert_array_equal(np.diff(image, axis=1), 1)


def test_a_model_trained_on_crops_is_rebuilt_at_model_size_with_its_weights_for_tflite():
    task = seg_task("segmentation.train_crop=16")
    model = task.build_model()
    crops = np.random.default_rng(0).uniform(0, 255, (2, 16, 16, 3)).astype(np.float32)
    assert model(crops).shape == (2, 16, 16, len(CLASSES))
    model.get_layer("logits").bias.assign([0.5, -0.5, 0.25])  # a weight the fresh build lacks
    fixed = task.fixed_size_model(model)
    assert fixed.input_shape == (None, 32, 32, 3)
    images = np.random.default_rng(1).uniform(0, 255, (2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(fixed(images).numpy(), model(images).numpy(), atol=1e-5)
    # what the optimizer's int8 layer repair converts: the static-shape model, not the open one
    assert task.static_shape_model(model).input_shape == (None, 32, 32, 3)
    assert seg_task().static_shape_model(model) is model


@pytest.mark.parametrize("overrides, problem", [
    (["segmentation.train_crop=20"], "multiple of 8"),
    (["segmentation.train_crop=64"], "larger than model.image_size"),
    (["segmentation.train_crop=16", "segmentation.architecture=fcn"], "runs at any size")])
def test_a_train_crop_the_network_cannot_take_is_a_config_error(overrides, problem):
    from visionpipe.core.errors import ConfigError

    with pytest.raises(ConfigError, match=f"segmentation.train_crop.*{problem}"):
        seg_config(*overrides)


# --- models and serving ---------------------------------------------------------------------

@pytest.mark.parametrize("overrides", [["segmentation.architecture=unet"],
                                       ["segmentation.architecture=unet", "segmentation.encoder=backbone"],
                                       ["segmentation.architecture=fcn"],
                                       ["segmentation.architecture=deeplabv3plus"],
                                       ["segmentation.architecture=segnet"]],
                         ids=["unet", "unet_backbone", "fcn", "deeplabv3plus", "segnet"])
def test_every_architecture_builds_and_outputs_probabilities_per_pixel(overrides):
    task = seg_task(*overrides, "model.image_size=[32, 64]")
    model = task.build_model()
    out = model(tf.random.uniform([2, 32, 64, 3], 0, 255))
    assert out.shape == (2, 32, 64, len(CLASSES))
    np.testing.assert_allclose(out.numpy().sum(-1), 1.0, atol=1e-4)
    assert task.backbone_of(model).name == task.transfer_layer


def test_an_image_size_the_network_cannot_halve_is_a_config_error():
    from visionpipe.core.errors import ConfigError

    with pytest.raises(ConfigError, match="model.image_size"):
        seg_config("segmentation.architecture=fcn", "model.image_size=48")


def test_an_ignore_index_that_is_a_class_id_is_refused():
    with pytest.raises(ValueError, match="segmentation.ignore_index"):
        seg_task("segmentation.ignore_index=1")


def _png(pixels):
    buffer = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(buffer, format="PNG")
    return buffer.getvalue()


def test_serving_default_answers_at_each_images_own_size_and_the_png_is_the_same_map():
    task = seg_task("segmentation.serve_probabilities=true")
    model = task.build_model()
    signatures = task.signatures(model)
    rng = np.random.default_rng(0)
    images = [_png(rng.integers(0, 255, (40, 24, 3))), _png(rng.integers(0, 255, (20, 50, 3)))]
    out = {k: v.numpy() for k, v in signatures["serving_default"](images=tf.constant(images)).items()}
    assert out["image_shape"].tolist() == [[40, 24], [20, 50]]
    assert out["class_map"].shape == (2, 40, 50)  # padded to the largest
    for i, (h, w) in enumerate(out["image_shape"]):
        own = out["class_map"][i, :h, :w]
        assert (out["class_map"][i][h:, :] == -1).all() and (out["class_map"][i][:, w:] == -1).all()
        assert set(np.unique(own)) <= set(range(len(CLASSES)))
        decoded = np.asarray(Image.open(io.BytesIO(out["class_map_png_bytes"][i])))
        np.testing.assert_array_equal(decoded, own)
        # the own-size map is the model-size arg-max resized nearest-neighbour
        pixels = tf.image.resize(tf.io.decode_png(images[i], channels=3)[None], [32, 32])
        small = np.argmax(model(pixels).numpy()[0], -1)
        rows = np.minimum(((np.arange(h) + 0.5) * 32 / h).astype(int), 31)  # half-pixel centres
        cols = np.minimum(((np.arange(w) + 0.5) * 32 / w).astype(int), 31)
        np.testing.assert_array_equal(own, small[rows][:, cols])
    assert out["probabilities"].shape == (2, 32, 32, len(CLASSES))


@pytest.mark.parametrize("architecture", ["unet", "fcn", "deeplabv3plus", "segnet"])
def test_every_architecture_reloads_from_its_export_and_converts_to_int8_with_segmenter_metadata(
        architecture, tmp_path):
    from visionpipe.models import export
    from visionpipe.runtime import tflite_convert
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    task = seg_task(f"segmentation.architecture={architecture}")
    model = task.build_model()
    export.export_saved_model(model, task, str(tmp_path / "export"))
    reloaded = export.load_keras_model(str(tmp_path / "export"))
    images = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    np.testing.assert_allclose(reloaded(images).numpy(), model(images).numpy(), atol=1e-5)
    flatbuffer = task.convert_tflite(reloaded, "int8", tflite_convert.representative_dataset([images], 4))
    path = tflite_convert.write(str(tmp_path / "model.tflite"), tflite_convert.add_metadata(
        flatbuffer, task.class_names, kind=task.tflite_metadata_kind))
    assert tflite_convert.metadata_kind(path) == "image_segmenter"
    assert tflite_convert.read_labels(path) == CLASSES
    assert TFLiteModel(path).scores(images).shape == (4, 32, 32, len(CLASSES))


# unet, fcn and deeplabv3plus (keras-cv's ASPP) took QAT and pruning too when tried by hand;
# the suite keeps the one with the custom unpooling layer (a minute of CPU each).
@pytest.mark.parametrize("architecture", ["segnet"])
def test_quantization_aware_training_and_pruning_apply_to_segmentation_models(architecture, tmp_path):
    """The optimizer's Keras rewrites (tfmot QAT, magnitude pruning) take segmentation models:
    one fine-tuning epoch each, the QAT copy converts to int8 TFLite and is scored on mIoU
    from the interpreter, the pruned copy reaches its sparsity."""
    import tensorflow as tf

    from visionpipe.optimize import pruning, qat
    from visionpipe.runtime import tflite_convert

    task = seg_task(f"segmentation.architecture={architecture}", "segmentation.depth=2")
    model = task.build_model()
    task.compile_model(model, 1e-3)
    rng = np.random.default_rng(0)
    images = rng.uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
    masks = rng.integers(0, len(CLASSES), (4, 32, 32, 1)).astype(np.int32)
    batches = tf.data.Dataset.from_tensor_slices((images, masks)).batch(2)
    compile_fn = lambda m: task.compile_model(m, 1e-3)  # noqa: E731
    qat_model = qat.train_quantization_aware(model, batches, compile_fn, epochs=1)
    path = tflite_convert.write(str(tmp_path / "qat.tflite"), tflite_convert.convert(
        qat_model, "int8", tflite_convert.representative_dataset([images], 4)))
    metrics = task.evaluate_tflite(path, batches)
    assert 0.0 <= metrics["miou"] <= 1.0
    pruned = pruning.prune(model, batches, compile_fn, sparsity=0.5, structure="unstructured",
                           epochs=1)
    assert pruned.overall_sparsity == pytest.approx(0.5, abs=0.1)


# --- evaluation details: per class, per image size, overlays --------------------------------

class _FakeExport:
    """A loaded export whose ``serving_default`` answers hand-made class maps, keyed by the
    encoded image (padded to the batch's largest with -1, as the real one)."""

    def __init__(self, answers):
        self.answers = answers

        def serve(images):
            maps = [self.answers[bytes(x)] for x in images.numpy()]
            h, w = max(m.shape[0] for m in maps), max(m.shape[1] for m in maps)
            padded = np.full((len(maps), h, w), -1, np.int32)
            for i, m in enumerate(maps):
                padded[i, :m.shape[0], :m.shape[1]] = m
            return {"class_map": tf.constant(padded),
                    "image_shape": tf.constant([m.shape for m in maps], tf.int32)}

        self.signatures = {"serving_default": serve}


def _image_mask_file(path, pairs):
    from visionpipe.core import features as F

    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for image, mask in pairs:
            feature = {F.ENCODED: tf.train.Feature(bytes_list=tf.train.BytesList(value=[image])),
                       F.SEGMENTATION_MASK: tf.train.Feature(bytes_list=tf.train.BytesList(
                           value=[_png(mask)]))}
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    return [str(path)]


def test_evaluation_details_slice_by_image_size_and_class_and_draw_truth_beside_prediction(tmp_path):
    task = seg_task()
    rng = np.random.default_rng(0)
    images = [_png(rng.integers(0, 255, shape)) for shape in [(2, 4, 3), (2, 4, 3), (3, 2, 3)]]
    truths = [np.array([[0, 0, 1, 1], [0, 0, 1, 255]]),   # 2x4 (one pixel ignored)
              np.array([[0, 0, 0, 0], [0, 0, 0, 0]]),     # 2x4, background only
              np.array([[2, 2], [2, 0], [0, 0]])]         # 3x2
    predicted = [np.array([[0, 1, 1, 1], [0, 0, 0, 2]]),
                 np.array([[0, 0, 0, 0], [0, 0, 0, 1]]),
                 np.array([[2, 2], [2, 2], [0, 0]])]
    eval_files = _image_mask_file(tmp_path / "eval.tfrecord.gz", list(zip(images, truths)))
    task.__dict__["_loaded_exports"] = {"export": _FakeExport(dict(zip(images, predicted)))}
    details = task.evaluation_details("export", eval_files, output_dir=str(tmp_path / "evaluation"))

    # the 2x4 slice, 2 images: confusion [[10, 2, 0], [1, 2, 0], [0, 0, 0]] (the square
    # predicted on the ignored pixel does not count): square absent, not in the mean
    small = details["by_image_size"]["2x4"]
    assert small["examples"] == 2
    assert small["pixel_accuracy"] == pytest.approx(12 / 15)
    assert small["miou"] == pytest.approx((10 / 13 + 2 / 5) / 2)
    tall = details["by_image_size"]["3x2"]  # confusion [[2, 0, 1], [0, 0, 0], [0, 0, 3]]
    assert tall["examples"] == 1 and tall["pixel_accuracy"] == pytest.approx(5 / 6)
    assert tall["miou"] == pytest.approx((2 / 3 + 3 / 4) / 2)
    assert set(details["by_image_size"]) == {"2x4", "3x2"}

    per_class = details["per_class"]
    assert set(per_class) == set(CLASSES)
    # circle over all images: TP 2, FP 2 (1 + 1), FN 1
    assert per_class["circle"]["iou"] == pytest.approx(2 / 5)
    assert per_class["circle"]["dice"] == pytest.approx(4 / 7)
    assert per_class["circle"]["precision"] == pytest.approx(2 / 4)
    assert per_class["circle"]["recall"] == pytest.approx(2 / 3)
    assert per_class["circle"]["truth_pixels"] == 3 and per_class["circle"]["images"] == 1
    # square: TP 3, FP 1 (the 3x2 image), FN 0
    assert per_class["square"]["iou"] == pytest.approx(3 / 4)
    assert per_class["square"]["images"] == 1 and per_class["square"]["image_miou"] == pytest.approx(3 / 4)
    assert per_class["background"]["images"] == 3

    # boundary pixels (right/lower neighbour differs, ignored pixels none): truth 2 + 0 + 2,
    # all within 2 px of a predicted one; predicted 3 + 2 + 2, the 2 around the background
    # image's stray circle pixel near no truth boundary
    edges = details["boundary_f1"]
    assert edges["tolerance_px"] == 2 and edges["recall"] == 1.0
    assert edges["precision"] == pytest.approx(5 / 7)
    assert details["overlays"] == ["overlays/eval_000.png", "overlays/eval_001.png",
                                   "overlays/eval_002.png"]
    drawn = np.asarray(Image.open(tmp_path / "evaluation" / "overlays" / "eval_002.png"))
    assert drawn.shape == (3, 3 * 2 + 2 * 4, 3)  # image | truth | prediction, 4 px gaps
    np.testing.assert_array_equal(drawn[:, :2], np.asarray(Image.open(io.BytesIO(images[2]))))
    # the truth and the prediction differ at (1, 1) only (0 vs 2): so do their overlays
    truth_side, predicted_side = drawn[:, 6:8].astype(int), drawn[:, 12:14].astype(int)
    differs = (truth_side != predicted_side).any(-1)
    assert differs.tolist() == [[False, False], [False, True], [False, False]]
    # without a folder nothing is drawn
    assert task.evaluation_details("export", eval_files)["overlays"] == []


def test_many_image_sizes_are_sliced_by_longer_side_buckets():
    sizes = [(h, 100) for h in range(10, 20)] + [(300, 200)]
    keys = evaluation.size_slice_keys(sizes)
    assert keys[:10] == ["long side 65-128"] * 10 and keys[10] == "long side 257-512"
    assert evaluation.size_slice_keys([(2, 4), (3, 2)]) == ["2x4", "3x2"]


def test_predict_prints_class_shares_by_the_exports_class_names(tmp_path, capsys):
    from visionpipe.cli.main import main
    from visionpipe.models import export

    task = seg_task()
    export_dir = export.export_saved_model(task.build_model(), task, str(tmp_path / "export"))
    image = tmp_path / "one.png"
    image.write_bytes(_png(np.random.default_rng(0).integers(0, 255, (20, 30, 3))))
    assert main(["predict", "--model", export_dir, "--output_dir", str(tmp_path / "out"),
                 "--json", str(image)]) == 0
    row = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert row["size"] == [20, 30]
    assert set(row["class_shares"]) <= set(CLASSES) and row["class_shares"]
    assert sum(row["class_shares"].values()) == pytest.approx(1.0, abs=1e-3)
    ids = np.asarray(Image.open(tmp_path / "out" / "one.class_map.png"))
    expected = {CLASSES[c]: round(float(np.mean(ids == c)), 4) for c in np.unique(ids)}
    assert row["class_shares"] == expected


def test_boundary_f1_matches_boundary_pixels_within_the_tolerance():
    truth = np.zeros((6, 6), int)
    truth[:, 3:] = 1  # boundary pixels: column 2 (its right neighbour differs)
    shifted = np.zeros((6, 6), int)
    shifted[:, 4:] = 1  # one pixel off
    for tolerance, expected in [(0, 0.0), (1, 1.0)]:
        acc = evaluation.BoundaryAccumulator(tolerance)
        acc.add(truth, shifted)
        assert acc.metrics()["f1"] == pytest.approx(expected)
    spurious = truth.copy()
    spurious[0, 0] = 1  # one extra predicted boundary pixel, far from the truth's
    acc = evaluation.BoundaryAccumulator(0)
    acc.add(truth, spurious)
    scores = acc.metrics()
    assert scores["precision"] == pytest.approx(6 / 7) and scores["recall"] == 1.0
    assert scores["f1"] == pytest.approx(2 * 6 / 7 / (1 + 6 / 7))
    # an ignored truth pixel makes no boundary on either side
    ignored = truth.copy()
    ignored[:, 2] = 255
    acc = evaluation.BoundaryAccumulator(0)
    acc.add(ignored, truth)
    assert acc.truth == 0 and acc.predicted == 0 and acc.metrics()["f1"] == 1.0
    blank = evaluation.BoundaryAccumulator(2)
    blank.add(truth, np.zeros_like(truth))
    assert blank.metrics()["f1"] == 0.0


def test_report_panels_table_every_class_and_copy_the_overlays_into_the_report(tmp_path):
    from PIL import Image

    task = seg_task()
    (tmp_path / "overlays").mkdir()
    Image.new("RGB", (24, 8), "red").save(tmp_path / "overlays" / "eval_000.png")
    report_dir = tmp_path / "report"
    report_dir.mkdir()
    evaluation = {"details": {"overlays": ["overlays/eval_000.png"], "per_class": {
        name: {"iou": 0.5, "dice": 0.6, "precision": 0.7, "recall": 0.8, "images": 3}
        for name in task.class_names}}}
    table, overlays = task.report_panels(evaluation, str(tmp_path), str(report_dir))
    assert [row[0] for row in table.rows] == task.class_names
    assert overlays.images == ["segmentation_eval_000.png"]
    assert Image.open(report_dir / "segmentation_eval_000.png").size == (24, 8)
