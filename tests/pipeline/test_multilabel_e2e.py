"""Multi-label classification through the whole pipeline: TaskEvaluator gate, push, outputs."""
import json

import numpy as np
import pytest

from visionpipe.components.task_evaluator.executor import gate
from visionpipe.pipeline import commands
from visionpipe.pipeline.config import load_config


def test_gate_blocks_on_absolute_threshold_and_on_drop_vs_baseline():
    ok, failures = gate({"f1": 0.8}, {"f1": 0.9}, {"f1": 0.5}, {"f1": 0.05})
    assert not ok and "dropped more than 0.05" in failures[0]
    ok, failures = gate({"f1": 0.4}, None, {"f1": 0.5}, {"f1": 0.05})
    assert not ok and "below the threshold 0.5" in failures[0]
    assert gate({"f1": 0.88}, {"f1": 0.9}, {"f1": 0.5}, {"f1": 0.05}) == (True, [])
    ok, failures = gate({"f1": 0.9}, None, {"accuracy": 0.5}, {})
    assert not ok and "not computed by this task" in failures[0]


@pytest.mark.e2e
def test_multilabel_model_is_gated_on_f1_pushed_and_returns_labels_per_threshold(tmp_path):
    config = load_config("configs/multilabel.yaml", [
        "name=ml_e2e", "data.num_images=200", "data.image_size=32", "model.image_size=32",
        "model.width=8", "train.epochs=3", "evaluate.thresholds={f1: 0.3}",
        f"runner.output_dir={tmp_path}/runs", f"push.serving_root={tmp_path}/serving"])
    paths, result = commands._run(config)
    assert result["evaluation"]["blessed"] is True
    assert 0.3 <= result["evaluation"]["metrics"]["f1"] <= 1.0
    assert result["push"]["pushed"] is True
    summary = json.loads(next((tmp_path / "runs" / "ml_e2e").rglob("training_summary.json")).read_text())
    assert summary["calibrated_on"] == "calibration"
    csv = sorted((tmp_path / "runs" / "ml_e2e").rglob("labels.csv"))[0]
    first = csv.read_text().splitlines()[1].split(",")
    image = (csv.parent / first[0]).read_bytes()
    outputs = commands.predict_saved_model(result["push"]["path"], [image])
    assert outputs["labels"].shape == outputs["probabilities"].shape == (1, 5)
    thresholds = outputs["thresholds"][0]
    assert np.all((thresholds > 0) & (thresholds < 1))
    np.testing.assert_array_equal(outputs["labels"][0], outputs["probabilities"][0] >= thresholds)


def test_multilabel_targets_keep_each_examples_own_labels():
    import tensorflow as tf

    from visionpipe.components.task_evaluator.executor import targets_of
    from visionpipe.models.tasks import get_task

    def example(labels):
        feature = {"image/class/label": tf.train.Feature(int64_list=tf.train.Int64List(value=labels))}
        return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString()

    task = get_task(load_config(overrides=["task=multilabel"]), ["a", "b", "c"])
    targets = targets_of(task, tf.constant([example([1]), example([1, 2])]))
    np.testing.assert_array_equal(np.stack(targets), [[0, 1, 0], [0, 1, 1]])


def test_multilabel_target_of_an_image_without_labels_is_all_zeros_with_a_finite_loss():
    import tensorflow as tf

    from visionpipe.models.tasks import get_task

    task = get_task(load_config(overrides=["task=multilabel", "data.allow_unlabeled=true"]),
                    ["a", "b", "c"])
    empty = task.target(tf.constant([], tf.int64))
    np.testing.assert_array_equal(empty.numpy(), [0, 0, 0])
    np.testing.assert_array_equal(task.target(tf.constant([2, 2], tf.int64)).numpy(), [0, 0, 1])
    loss = task.loss()(empty[tf.newaxis], tf.constant([[0.2, 0.1, 0.3]]))
    assert np.isfinite(loss.numpy())


def test_thresholds_come_from_the_calibration_split_when_the_examples_have_one(tmp_path):
    from visionpipe.models.trainer import calibration_split_files

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
    from visionpipe.pipeline.config import ConfigError

    with pytest.raises(ConfigError, match="model.calibration_split"):
        load_config(overrides=["model.calibration_split=eval"])
