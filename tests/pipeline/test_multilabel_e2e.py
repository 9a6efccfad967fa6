"""Multi-label classification through the whole pipeline: the Evaluator's gate, push, outputs."""
import json

import numpy as np
import pytest

from visionpipe.cli import pipeline_commands as commands
from visionpipe.core.config import load_config
from visionpipe.pipeline import summary


def _config(tmp_path, *overrides):
    return load_config("configs/multilabel.yaml", [
        "name=ml_e2e", "data.num_images=200", "data.image_size=32", "model.image_size=32",
        "model.width=8", "train.epochs=3", "evaluate.thresholds={f1: 0.3}",
        "evaluate.min_margin_over_trivial=0.0",
        f"runner.output_dir={tmp_path}/runs", f"push.serving_root={tmp_path}/serving", *overrides])


@pytest.fixture(scope="module")
def ml_runs(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("ml")
    first = commands._run(_config(tmp_path))[1]
    # the untrained second model is judged with the default margin over the trivial predictor
    worse = commands._run(_config(tmp_path, "train.epochs=0",
                                  "evaluate.min_margin_over_trivial=0.05"))[1]
    return tmp_path, first, worse


@pytest.mark.e2e
def test_multilabel_model_is_gated_on_f1_pushed_and_returns_labels_per_threshold(ml_runs):
    tmp_path, result, _ = ml_runs
    assert result["evaluation"]["blessed"] is True
    metrics = result["evaluation"]["metrics"]
    assert 0.3 <= metrics["f1"] <= 1.0
    # the ranking metrics are computed and reported by label name (whether the recipe learns
    # is tests/tasks/test_multilabel_learns.py's and configs/multilabel.yaml's question)
    names = ["circle", "cross", "square", "star", "triangle"]
    assert sorted(k.split("/", 1)[1] for k in metrics if k.startswith("ap/")) == names
    for key in ["macro_auc", "macro_map", "macro_f1", "micro_f1"] + [f"ap/{n}" for n in names]:
        assert 0.0 <= metrics[key] <= 1.0, key
    assert metrics["micro_f1"] == metrics["f1"]
    assert "AP per label" in summary.format_summary(result)
    assert result["push"]["pushed"] is True
    training = json.loads(next((tmp_path / "runs" / "ml_e2e").rglob("training_summary.json")).read_text())
    assert training["calibrated_on"] == "calibration"
    csv = sorted((tmp_path / "runs" / "ml_e2e").rglob("labels.csv"))[0]
    first = csv.read_text().splitlines()[1].split(",")
    image = (csv.parent / first[0]).read_bytes()
    outputs = commands.predict_saved_model(result["push"]["path"], [image])
    assert outputs["labels"].shape == outputs["probabilities"].shape == (1, 5)
    thresholds = outputs["thresholds"][0]
    assert np.all((thresholds > 0) & (thresholds < 1))
    np.testing.assert_array_equal(outputs["labels"][0], outputs["probabilities"][0] >= thresholds)


@pytest.mark.e2e
def test_a_worse_second_multilabel_model_is_refused_against_the_blessed_first(ml_runs):
    _, first, worse = ml_runs
    evaluation = worse["evaluation"]
    # the latest blessed model is found (the blessing records current_model_id) ...
    assert evaluation["baseline"] is not None
    assert evaluation["baseline"]["f1"] == first["evaluation"]["metrics"]["f1"]
    # ... and the untrained model is refused: it does not beat the trivial predictor
    assert evaluation["blessed"] is False
    assert any("does not beat the trivial predictor" in failure
               for failure in evaluation["failures"])
    assert evaluation["gate"][0]["baseline"] == first["evaluation"]["metrics"]["f1"]
    assert worse["push"]["pushed"] is False


def test_multilabel_targets_keep_each_examples_own_labels():
    import tensorflow as tf

    from visionpipe.core import features
    from visionpipe.tasks import get_task

    def example(labels):
        feature = {"image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=labels)),
                   "image/encoded": tf.train.Feature(bytes_list=tf.train.BytesList(value=[b"x"]))}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    task = get_task(load_config(overrides=["task=multilabel"]), ["a", "b", "c"])
    targets = [task.target_of({k: v.numpy() for k, v in
                               features.parse_single(record, task.feature_keys).items()})
               for record in tf.constant([example([1]), example([1, 2])])]
    np.testing.assert_array_equal(np.stack(targets), [[0, 1, 0], [0, 1, 1]])


def test_multilabel_target_of_an_image_without_labels_is_all_zeros_with_a_finite_loss():
    import tensorflow as tf

    from visionpipe.tasks import get_task

    task = get_task(load_config(overrides=["task=multilabel", "data.allow_unlabeled=true"]),
                    ["a", "b", "c"])
    empty = task.target(tf.constant([], tf.int64))
    np.testing.assert_array_equal(empty.numpy(), [0, 0, 0])
    np.testing.assert_array_equal(task.target(tf.constant([2, 2], tf.int64)).numpy(), [0, 0, 1])
    loss = task.loss()(empty[tf.newaxis], tf.constant([[0.2, 0.1, 0.3]]))
    assert np.isfinite(loss.numpy())


def test_thresholds_come_from_the_calibration_split_when_the_examples_have_one(tmp_path):
    from visionpipe.components.trainer.run_fn import calibration_split_files

    for split in ("train", "eval"):
        (tmp_path / f"Split-{split}").mkdir()
        (tmp_path / f"Split-{split}" / "data.gz").write_bytes(b"")
    train_patterns = [str(tmp_path / "Split-train" / "*")]
    assert calibration_split_files(train_patterns, "calibration") is None
    (tmp_path / "Split-calibration").mkdir()
    (tmp_path / "Split-calibration" / "data.gz").write_bytes(b"")
    assert calibration_split_files(train_patterns, "calibration") == [
        str(tmp_path / "Split-calibration" / "data.gz")]


def test_calibrating_on_the_eval_split_is_refused_by_name():
    from visionpipe.core.config import ConfigError

    with pytest.raises(ConfigError, match="model.calibration_split"):
        load_config(overrides=["model.calibration_split=eval"])
