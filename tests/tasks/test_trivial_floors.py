"""Each task's trivial predictor (the one that ignores the image), scored on hand-made
Examples with the numbers worked out by hand."""
import numpy as np
import pytest

from visionpipe.core.config import load_config
from visionpipe.tasks import get_task


def _write(path, examples):
    import tensorflow as tf

    def feature(values):
        if isinstance(values[0], bytes):
            return tf.train.Feature(bytes_list=tf.train.BytesList(value=values))
        if isinstance(values[0], float):
            return tf.train.Feature(float_list=tf.train.FloatList(value=values))
        return tf.train.Feature(int64_list=tf.train.Int64List(value=values))

    path.parent.mkdir(parents=True, exist_ok=True)
    with tf.io.TFRecordWriter(str(path), options="GZIP") as writer:
        for example in examples:
            features = {"image/encoded": feature([b"not decoded"])}
            features.update({key: feature(list(v)) for key, v in example.items() if len(v)})
            writer.write(tf.train.Example(
                features=tf.train.Features(feature=features)).SerializeToString())
    return [str(path)]


def _labelled(tmp_path, name, label_lists):
    return _write(tmp_path / name / "data.gz", [{"image/class/label": labels} for labels in label_lists])


def test_classification_floor_is_the_best_constant_answer_on_the_eval_split(tmp_path):
    task = get_task(load_config(overrides=["model.top_k=2"]), ["a", "b", "c"])
    train = _labelled(tmp_path, "train", [[0], [0], [0], [1], [2]])
    eval_ = _labelled(tmp_path, "eval", [[0], [1], [1], [2]])
    floor = task.trivial_metrics(eval_, train)
    # always "b" (the eval majority; the training majority "a" would be right once in four)
    assert floor["accuracy"] == pytest.approx(0.5)
    # always {"b", "a"}: "a" and "c" tie in eval, the training split prefers "a"
    assert floor["top_k_accuracy"] == pytest.approx(0.75)
    assert floor["macro_auc"] == pytest.approx(0.5)  # constant scores rank nothing


def test_classification_floor_is_not_lowered_by_a_class_the_eval_split_lacks(tmp_path):
    # balanced data, split unluckily: the training majority "c" is absent from eval, where a
    # model answering "a" for every image is right half the time
    task = get_task(load_config(overrides=["model.top_k=1"]), ["a", "b", "c"])
    train = _labelled(tmp_path, "train", [[0], [1], [1], [2], [2], [2]])
    eval_ = _labelled(tmp_path, "eval", [[0], [0], [1], [1]])
    floor = task.trivial_metrics(eval_, train)
    assert floor["accuracy"] == pytest.approx(0.5)  # "b" (ties with "a", preferred by train)


def test_multilabel_floor_is_the_best_fixed_label_set_from_the_priors(tmp_path):
    task = get_task(load_config(overrides=["task=multilabel"]), ["a", "b", "c"])
    train = _labelled(tmp_path, "train", [[0], [0, 1], [0], [2]])  # priors a .75, b .25, c .25
    eval_ = _labelled(tmp_path, "eval", [[0], [1], [0, 2]])
    floor = task.trivial_metrics(eval_, train)
    # every label for every image: tp 4, predicted 9, true 4 -> F1 8/13 (beats "a" alone, 4/7)
    assert floor["f1"] == pytest.approx(8 / 13)
    assert floor["exact_match"] == pytest.approx(0.0)
    # the thresholds the trivial predictor tried do not leak into the task's own rule
    np.testing.assert_allclose(task.thresholds, task.config.model.multilabel_threshold)
    # constant scores rank nothing: AUC 0.5 per label, AP the label's frequency in eval
    assert floor["macro_auc"] == pytest.approx(0.5)
    assert floor["ap/a"] == pytest.approx(2 / 3) and floor["ap/b"] == pytest.approx(1 / 3)
    assert floor["macro_map"] == pytest.approx((2 / 3 + 1 / 3 + 1 / 3) / 3)


def test_multilabel_floor_on_a_ranking_gate_is_chance(tmp_path):
    task = get_task(load_config(overrides=["task=multilabel", "evaluate.gate_metric=macro_auc"]),
                    ["a", "b"])
    train = _labelled(tmp_path, "train", [[0], [0, 1], [1]])
    eval_ = _labelled(tmp_path, "eval", [[0], [1], [0, 1], [1]])
    assert task.trivial_metrics(eval_, train)["macro_auc"] == pytest.approx(0.5)


def test_detection_floor_is_the_detector_that_finds_nothing(tmp_path):
    task = get_task(load_config(overrides=["task=detection"]), ["cell"])
    box = {"image/height": [100], "image/width": [100], "image/object/class/label": [0],
           "image/object/bbox/ymin": [0.1], "image/object/bbox/xmin": [0.1],
           "image/object/bbox/ymax": [0.6], "image/object/bbox/xmax": [0.5]}
    files = _write(tmp_path / "eval" / "data.gz", [box, box])
    floor = task.trivial_metrics(files, files)
    assert floor["map_50"] == pytest.approx(0.0) and floor["map"] == pytest.approx(0.0)
