import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

from visionpipe.models import augment, data

from visionpipe.core.examples import split_files
from visionpipe.tasks import get_task
from visionpipe.cli.main import main
from visionpipe.core.config import load_config

EVERYTHING = ["augment.vertical_flip=true", "augment.rotation=0.2", "augment.zoom=0.2",
              "augment.translation=0.1", "augment.shear=0.1", "augment.brightness=0.2",
              "augment.contrast=0.2", "augment.gamma=0.3", "augment.saturation=0.3", "augment.hue=0.1",
              "augment.random_crop=0.2", "augment.gaussian_noise=0.02", "augment.cutout=0.25",
              "augment.mixup_alpha=0.2", "augment.cutmix_alpha=1.0", "augment.randaugment_magnitude=0.3"]


def test_every_augmentation_keeps_shape_range_and_label_mass():
    config = load_config(overrides=["model.image_size=24", *EVERYTHING])
    augmenter = augment.build_augmenter(config.augment, 24)
    images = tf.random.uniform([6, 24, 24, 3], 0, 255, seed=1)
    labels = tf.one_hot([0, 1, 2, 0, 1, 2], 3)
    out, mixed = augmenter(images, labels)
    assert out.shape == images.shape
    assert float(tf.reduce_min(out)) >= 0 and float(tf.reduce_max(out)) <= 255
    np.testing.assert_allclose(tf.reduce_sum(mixed, axis=-1), 1.0, atol=1e-5)  # MixUp/CutMix keep a distribution
    assert float(tf.reduce_mean(tf.abs(out - images))) > 1.0


def test_augmentation_is_off_in_evaluation_and_on_in_training(digits_examples):
    config, examples_uri, names = digits_examples
    augmented = load_config(overrides=["data.source=digits", "data.image_size=16", "model.image_size=16",
                                       "augment.rotation=0.3", "augment.vertical_flip=true"])
    files = split_files(examples_uri, "eval")
    task = get_task(augmented, names)
    plain = np.stack([x.numpy() for x, _ in data.pairs(files, task).take(8)])
    evaluation = next(iter(data.make_dataset(files, task, 8, training=False)))[0].numpy()
    np.testing.assert_allclose(evaluation, plain)  # evaluation sees the unaugmented images
    training = next(iter(data.make_dataset(files, task, 64, training=True, seed=5)))[0].numpy()
    assert not any(np.allclose(t, p) for t in training for p in plain)  # training is augmented


# Stateful random ops: their draws depend on the order in which the parallel tf.data map
# calls reach them (tf.random.Generator's variable, op-seeded kernels) or are unseeded.
STATEFUL_RANDOM_OPS = {
    "RandomUniform", "RandomUniformInt", "RandomStandardNormal", "TruncatedNormal", "RandomGamma",
    "RandomGammaGrad", "RandomPoisson", "RandomPoissonV2", "RandomShuffle", "Multinomial",
    "ParameterizedTruncatedNormal", "StatefulUniform", "StatefulUniformInt", "StatefulUniformFullInt",
    "StatefulStandardNormal", "StatefulStandardNormalV2", "StatefulTruncatedNormal",
    "StatefulRandomBinomial", "RngSkip", "RngReadAndSkip"}


def _op_types(concrete) -> set:
    graph_def = concrete.graph.as_graph_def()
    types = {node.op for node in graph_def.node}
    for function in graph_def.library.function:
        types |= {node.op for node in function.node_def}
    return types


def test_every_random_draw_is_stateless():
    config = load_config(overrides=["model.image_size=24", *EVERYTHING])
    augmenter = augment.build_augmenter(config.augment, 24)
    traced = tf.function(augmenter).get_concrete_function(
        tf.TensorSpec([None, 24, 24, 3], tf.float32), tf.TensorSpec([None, 3], tf.float32),
        tf.TensorSpec([2], tf.int64))
    types = _op_types(traced)
    assert "StatelessRandomUniformV2" in types or "StatelessRandomUniform" in types
    assert not types & STATEFUL_RANDOM_OPS, types & STATEFUL_RANDOM_OPS


def test_a_batch_depends_on_its_seed_only_and_images_in_it_get_their_own_draws():
    config = load_config(overrides=["model.image_size=24", *EVERYTHING])
    augmenter = augment.build_augmenter(config.augment, 24)
    image = tf.random.stateless_uniform([1, 24, 24, 3], [1, 2], 0, 255)
    images, labels = tf.repeat(image, 6, axis=0), tf.one_hot([0, 1, 2, 0, 1, 2], 3)
    first, first_labels = augmenter(images, labels, tf.constant([11, 0], tf.int64))
    again, again_labels = augmenter(images, labels, tf.constant([11, 0], tf.int64))
    np.testing.assert_array_equal(first, again)
    np.testing.assert_array_equal(first_labels, again_labels)
    later, _ = augmenter(images, labels, tf.constant([11, 1], tf.int64))  # the next batch
    assert float(tf.reduce_max(tf.abs(first - later))) > 1
    first = first.numpy()
    assert all(not np.allclose(first[0], other) for other in first[1:])  # one image, six draws

    # per-image layers (keras-cv's non-vectorized ones) draw per image, not once per batch
    for option in ("augment.random_crop=0.4", "augment.randaugment_magnitude=0.5"):
        single = load_config(overrides=["model.image_size=24", "augment.horizontal_flip=false", option])
        out, _ = augment.build_augmenter(single.augment, 24)(images, labels, tf.constant([3, 0], tf.int64))
        distinct = {np.round(o, 3).tobytes() for o in out.numpy()}
        assert len(distinct) > 1, option


def _classification_batches(examples_uri, names, overrides, n, seed=5):
    config = load_config(overrides=["data.source=digits", "data.image_size=16", "model.image_size=16",
                                    *overrides])
    files = split_files(examples_uri, "eval")
    dataset = data.make_dataset(files, get_task(config, names), 32, training=True, seed=seed)
    return [(x.numpy(), y.numpy()) for x, y in dataset.take(n)], data.count_examples(files)


def test_same_seed_gives_the_same_augmented_batches_over_epochs(digits_examples):
    """Every option on, through data.make_dataset (parallel map), two builds with fresh tasks."""
    _, examples_uri, names = digits_examples
    first, count = _classification_batches(examples_uri, names, EVERYTHING, 8)
    assert 8 * 32 >= 2 * count  # the batches span at least two epochs
    second, _ = _classification_batches(examples_uri, names, EVERYTHING, 8)
    for (x1, y1), (x2, y2) in zip(first, second):
        np.testing.assert_array_equal(x1, x2)
        np.testing.assert_array_equal(y1, y2)
    other, _ = _classification_batches(examples_uri, names, EVERYTHING + ["augment.seed=12"], 8)
    for (x1, _), (x2, _) in zip(first, other):
        assert np.abs(x1 - x2).max() > 1


def test_another_augment_seed_changes_the_augmentation_not_the_data_order(digits_examples):
    _, examples_uri, names = digits_examples
    geometric = ["augment.rotation=0.3", "augment.vertical_flip=true", "augment.brightness=0.2"]
    first, _ = _classification_batches(examples_uri, names, geometric, 3)
    other, _ = _classification_batches(examples_uri, names, geometric + ["augment.seed=12"], 3)
    for (x1, y1), (x2, y2) in zip(first, other):
        np.testing.assert_array_equal(y1, y2)  # data order: train.seed
        assert np.abs(x1 - x2).max() > 1    # augmentation: augment.seed


def test_each_epoch_augments_the_same_images_differently():
    config = load_config(overrides=["model.image_size=16", *EVERYTHING])
    images = tf.random.stateless_uniform([8, 16, 16, 3], [4, 5], 0, 255)
    labels = tf.one_hot(tf.range(8) % 3, 3)
    epochs = tf.data.Dataset.from_tensors((images, labels)).repeat(3)  # one batch per epoch

    def run():
        task = get_task(config, ["a", "b", "c"])
        return [x.numpy() for x, _ in data.augment_batches(epochs, task)]

    first = run()
    assert all(np.abs(first[0] - later).max() > 1 for later in first[1:])
    for a, b in zip(first, run()):
        np.testing.assert_array_equal(a, b)


def test_augment_preview_shows_every_class_original_then_distinct_draws(tmp_path, capsys):
    from visionpipe.cli import augment_preview

    out = tmp_path / "preview.png"
    code = main(["augment-preview", "--config", "configs/classification.yaml", "--output", str(out),
                 "--count", "5", "--draws", "2", "data.num_images=30", f"runner.output_dir={tmp_path}"])
    assert code == 0
    printed = capsys.readouterr().out
    # five shape classes, five images: one of each, not five of the first class
    assert "(circle 1, cross 1, square 1, star 1, triangle 1)" in printed
    assert "augmentations: horizontal_flip" in printed
    grid = np.asarray(Image.open(out)).astype(int)
    tile_w = augment_preview.TILE + 4
    tile_h = augment_preview.TILE + augment_preview.HEADER + 4
    assert grid.shape[1] == 3 * tile_w and grid.shape[0] > 5 * tile_h  # + the caption
    picture = np.s_[augment_preview.HEADER + 2:tile_h - 2]
    original, first, second = (grid[picture, i * tile_w + 2:(i + 1) * tile_w - 2] for i in range(3))
    assert np.abs(original - first).mean() > 5 and np.abs(first - second).mean() > 5


def test_augment_preview_takes_images_round_robin_over_classes_and_skips_invalid_ones():
    from types import SimpleNamespace

    from visionpipe.cli.augment_preview import stratified_valid

    listed = [SimpleNamespace(labels=[name], objects=[], n=i)
              for i, name in enumerate(["a"] * 6 + ["b"] * 2 + ["c"] * 3)]
    picked = stratified_valid(listed, 5, lambda item: None if item.n == 6 else item)
    assert [item.labels[0] for item in picked] == ["a", "c", "a", "b", "c"]  # b's first is invalid


def test_augment_preview_caption_lists_only_augmentations_the_task_applies():
    from visionpipe.cli.augment_preview import active_augmentations
    from visionpipe.core.config import AugmentConfig

    config = AugmentConfig(rotation=0.1, brightness=0.2, randaugment_magnitude=0.3)
    assert active_augmentations(config, None) == [
        "horizontal_flip", "rotation=0.1", "brightness=0.2", "randaugment_magnitude=0.3",
        "randaugment_ops=2"]
    assert active_augmentations(config, ["horizontal_flip", "brightness"]) == [
        "horizontal_flip", "brightness=0.2"]


# --- one builder, three modes ------------------------------------------------------------
def test_each_mode_declares_the_augment_keys_it_applies_and_tasks_take_them_from_it():
    import dataclasses

    from visionpipe.core.config import AugmentConfig, ConfigError
    from visionpipe.tasks import task_class

    every = {f.name for f in dataclasses.fields(AugmentConfig)}
    assert set(augment.honoured_keys("labels")) == every
    assert task_class("classification").augment_keys == augment.honoured_keys("labels")
    assert task_class("detection").augment_keys == augment.honoured_keys("boxes")
    assert {"rotation", "shear", "mixup_alpha", "randaugment_magnitude"}.isdisjoint(
        augment.honoured_keys("boxes"))
    assert {"rotation", "shear", "zoom", "random_crop", "translation"} <= set(augment.honoured_keys("masks"))
    assert "mixup_alpha" not in augment.honoured_keys("masks")
    with pytest.raises(ConfigError, match="augment.rotation: task 'detection' does not apply"):
        load_config(overrides=["task=detection", "augment.rotation=0.1"])


MASK_IDS = {0, 3, 255}  # background, a class, an ignore id


def _mask_scene(repeats, height=32, width=48):
    """Two squares: red is id 3, green the ignore id 255, on black (id 0)."""
    image = np.zeros((height, width, 3), np.float32)
    mask = np.zeros((height, width), np.int32)
    image[6:18, 8:22, 0], mask[6:18, 8:22] = 255, 3
    image[16:28, 28:42, 1], mask[16:28, 28:42] = 255, 255
    return (tf.constant(np.stack([image] * repeats)), tf.constant(np.stack([mask] * repeats)))


@pytest.mark.parametrize("option", ["augment.horizontal_flip=true", "augment.vertical_flip=true",
                                    "augment.translation=0.3", "augment.zoom=0.3",
                                    "augment.rotation=0.1", "augment.shear=0.2",
                                    "augment.random_crop=0.4"])
def test_mask_mode_moves_the_mask_with_its_image_and_keeps_only_its_ids(option):
    config = load_config(overrides=["augment.horizontal_flip=false", option])
    augmenter = augment.build_augmenter(config.augment, (32, 48), mode="masks")
    images, masks = _mask_scene(8)
    out_images, out_masks = augmenter(images, masks, tf.constant([5, 1], tf.int64))
    out_images, out_masks = out_images.numpy(), out_masks.numpy()
    assert out_images.shape == (8, 32, 48, 3) and out_masks.shape == (8, 32, 48)
    assert out_masks.dtype == np.int32
    assert set(np.unique(out_masks)) <= MASK_IDS
    assert (out_masks != masks.numpy()).any(), f"{option} moved nothing in 8 draws"
    for image, mask in zip(out_images, out_masks):
        for channel, class_id in ((0, 3), (1, 255)):
            # the square's pixels (bilinear on the image, nearest on the mask: edges may differ
            # by about a pixel) are where the mask holds its id
            square = image[..., channel] > 127.5
            assert (square == (mask == class_id)).mean() > 0.96, (option, class_id)


def test_mask_mode_photometric_layers_change_the_image_only():
    config = load_config(overrides=["augment.horizontal_flip=false", "augment.brightness=0.3",
                                    "augment.contrast=0.3", "augment.gamma=0.3",
                                    "augment.saturation=0.3", "augment.hue=0.1",
                                    "augment.gaussian_noise=0.02", "augment.cutout=0.3"])
    augmenter = augment.build_augmenter(config.augment, (32, 48), mode="masks")
    images, masks = _mask_scene(4)
    out_images, out_masks = augmenter(images, masks[..., None], tf.constant([2, 0], tf.int64))
    np.testing.assert_array_equal(out_masks, masks[..., None])  # rank kept, nothing moved
    assert float(tf.reduce_mean(tf.abs(out_images - images))) > 1.0


def test_mask_mode_is_stateless_and_seeded_per_batch():
    config = load_config(overrides=["augment.rotation=0.1", "augment.zoom=0.2",
                                    "augment.translation=0.1", "augment.random_crop=0.2",
                                    "augment.brightness=0.2"])
    augmenter = augment.build_augmenter(config.augment, (32, 48), mode="masks")
    images, masks = _mask_scene(4)
    first = augmenter(images, masks, tf.constant([7, 0], tf.int64))
    again = augmenter(images, masks, tf.constant([7, 0], tf.int64))
    later = augmenter(images, masks, tf.constant([7, 1], tf.int64))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert (first[1].numpy() != later[1].numpy()).any()
    traced = tf.function(augmenter).get_concrete_function(
        tf.TensorSpec([None, 32, 48, 3], tf.float32), tf.TensorSpec([None, 32, 48], tf.int32),
        tf.TensorSpec([2], tf.int64))
    assert not _op_types(traced) & STATEFUL_RANDOM_OPS


def test_label_mode_runs_at_a_non_square_size():
    config = load_config(overrides=["model.image_size=[24, 40]", *EVERYTHING])
    augmenter = augment.build_augmenter(config.augment, (24, 40))
    images = tf.random.uniform([4, 24, 40, 3], 0, 255, seed=1)
    out, mixed = augmenter(images, tf.one_hot([0, 1, 2, 0], 3), tf.constant([1, 0], tf.int64))
    assert out.shape == (4, 24, 40, 3)
    np.testing.assert_allclose(tf.reduce_sum(mixed, axis=-1), 1.0, atol=1e-5)
