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
