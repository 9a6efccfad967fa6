"""Small real data for model tests: scikit-learn's digits, ingested by the real ImageExampleGen
code path (no TFX), once per session."""
import pytest

from visionpipe.core.config import load_config


def digits_config(tmp_dir, *overrides):
    return load_config(overrides=[
        "name=digits_test", "data.source=digits", "data.num_images=400", "data.image_size=16",
        "model.image_size=16", "model.width=8", "train.epochs=2", "train.batch_size=32",
        "augment.horizontal_flip=false", f"runner.output_dir={tmp_dir}", *overrides])


@pytest.fixture(scope="session")
def digits_examples(tmp_path_factory):
    """(config, examples_uri, class_names) for 400 digits at 16x16."""
    from visionpipe.components.image_example_gen import ingest
    from visionpipe.pipeline.data_source import resolve_data_source

    tmp = tmp_path_factory.mktemp("digits")
    config = digits_config(tmp)
    result = ingest(resolve_data_source(config, str(tmp / "run")), str(tmp / "ingest"))
    return config, result.examples_uri, result.class_names


@pytest.fixture(scope="session")
def trained(digits_examples, tmp_path_factory):
    """(task, training result, export dir): a digits classifier trained for 2 epochs."""
    from visionpipe.core.examples import split_files
    from visionpipe.models import data, export, training
    from visionpipe.tasks import get_task

    config, examples_uri, names = digits_examples
    task = get_task(config, names)
    tmp = tmp_path_factory.mktemp("trained")
    result = training.train(config, task, split_files(examples_uri, "train"),
                            split_files(examples_uri, "eval"), str(tmp / "logs"))
    export_dir = str(tmp / "export")
    images = data.raw_images(split_files(examples_uri, "eval"), 3)
    export.export_saved_model(result.model, task, export_dir, images, "digits")
    return task, result, export_dir


SQUARES_SIZE = 32
SQUARE_SIDE = 12
SQUARE_COLOURS = {"red": (230, 40, 40), "green": (40, 230, 40)}


def coloured_squares(n: int, seed: int):
    """(images float32 [n, 32, 32, 3] in [0, 255], class ids, boxes [n, 4] as y0 x0 y1 x1):
    dark noise with one 12x12 square at a random place whose colour is the class, so the
    evidence for the class is exactly the square's pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 60, (n, SQUARES_SIZE, SQUARES_SIZE, 3)).astype(np.float32)
    labels = rng.integers(0, len(SQUARE_COLOURS), n)
    boxes = np.zeros((n, 4), np.int64)
    colours = list(SQUARE_COLOURS.values())
    for i in range(n):
        y, x = rng.integers(0, SQUARES_SIZE - SQUARE_SIDE + 1, 2)
        images[i, y:y + SQUARE_SIDE, x:x + SQUARE_SIDE] = colours[labels[i]]
        boxes[i] = (y, x, y + SQUARE_SIDE, x + SQUARE_SIDE)
    return images, labels, boxes


@pytest.fixture(scope="session")
def squares_classifier():
    """The classification task's own model (small_cnn, width 8, 32 px) trained for a few
    epochs on ``coloured_squares``; (task, model, held-out images, labels, boxes)."""
    from types import SimpleNamespace

    import tensorflow as tf

    from visionpipe.tasks import get_task

    config = load_config(overrides=["model.image_size=32", "data.image_size=32", "model.width=8"])
    task = get_task(config, list(SQUARE_COLOURS))
    tf.keras.utils.set_random_seed(0)
    model = task.build_model()
    task.compile_model(model, 5e-3)
    images, labels, _ = coloured_squares(320, seed=0)
    model.fit(images, tf.one_hot(labels, len(SQUARE_COLOURS)), epochs=4, batch_size=32, verbose=0)
    images, labels, boxes = coloured_squares(48, seed=1)
    return SimpleNamespace(task=task, model=model, images=images, labels=labels, boxes=boxes)
