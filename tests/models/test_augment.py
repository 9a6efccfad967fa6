import numpy as np
import tensorflow as tf
from PIL import Image

from visionpipe.models import augment, data
from visionpipe.models.tasks import get_task
from visionpipe.pipeline.cli import main
from visionpipe.pipeline.config import load_config

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


def test_augmentation_is_off_in_evaluation_and_the_data_order_is_seeded(digits_examples):
    # keras-cv's stateful generators (e.g. RandomFlip, RandomBrightness) do not repeat the same
    # draws across layer instances built with the same seed, so only the data order is checked
    # for reproducibility here (see the issue note).
    config, examples_uri, names = digits_examples
    augmented = load_config(overrides=["data.source=digits", "data.image_size=16", "model.image_size=16",
                                       "augment.rotation=0.3", "augment.vertical_flip=true"])
    files = data.split_files(examples_uri, "eval")
    task = get_task(augmented, names)
    plain = np.stack([x.numpy() for x, _ in data.pairs(files, task).take(8)])
    evaluation = next(iter(data.make_dataset(files, task, 8, training=False)))[0].numpy()
    np.testing.assert_allclose(evaluation, plain)  # evaluation sees the unaugmented images
    training = next(iter(data.make_dataset(files, task, 64, training=True, seed=5)))[0].numpy()
    assert not any(np.allclose(t, p) for t in training for p in plain)  # training is augmented

    unaugmented = load_config(overrides=["data.source=digits", "data.image_size=16",
                                         "model.image_size=16", "augment.enabled=false"])

    def first_labels():
        batch = next(iter(data.make_dataset(files, get_task(unaugmented, names), 8, training=True, seed=5)))
        return batch[1].numpy()

    np.testing.assert_array_equal(first_labels(), first_labels())


def test_augment_preview_writes_a_grid_of_originals_over_augmented_samples(tmp_path):
    out = tmp_path / "preview.png"
    code = main(["augment-preview", "--config", "configs/classification.yaml", "--output", str(out),
                 "--count", "6", "data.num_images=30", f"runner.output_dir={tmp_path}"])
    assert code == 0
    grid = np.asarray(Image.open(out))
    size = 48 + 2  # model.image_size plus the 1-pixel frame on each side
    assert grid.shape == (2 * size, 6 * size, 3)
    top, bottom = grid[:size].astype(int), grid[size:].astype(int)
    assert np.abs(top - bottom).mean() > 5
