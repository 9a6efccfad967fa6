"""Classification's decision metrics: the confusion-matrix metrics checked by hand and against
scikit-learn, and TFMA's evaluation of an export giving the same numbers as the task's own
scoring of that export (the path TFLite and ONNX files are scored on)."""
import numpy as np
import pytest

from visionpipe.core.examples import split_files
from visionpipe.tasks.classification import confusion, tfma_scoring


def test_confusion_metrics_by_hand_and_as_scikit_learn_computes_them():
    from sklearn.metrics import balanced_accuracy_score, f1_score

    truth = np.array([0, 0, 0, 0, 1, 1, 2, 2])
    predicted = np.array([0, 0, 0, 1, 1, 0, 0, 0])  # class 2 never predicted
    matrix = confusion.confusion_matrix(truth, predicted, 4)  # class 3 never seen at all
    metrics = confusion.confusion_metrics(matrix, ["a", "b", "c", "d"])
    assert metrics["recall/a"] == pytest.approx(3 / 4)
    assert metrics["recall/b"] == pytest.approx(1 / 2)
    assert metrics["recall/c"] == 0.0
    assert metrics["precision/a"] == pytest.approx(3 / 6)
    assert "precision/c" not in metrics and "recall/d" not in metrics  # undefined: no key
    assert metrics["balanced_accuracy"] == pytest.approx((3 / 4 + 1 / 2 + 0) / 3)
    assert metrics["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(truth, predicted))
    assert metrics["macro_f1"] == pytest.approx(f1_score(truth, predicted, average="macro"))


def test_tfma_scores_an_export_as_the_task_scores_it(trained, digits_examples, tmp_path):
    task, _, export_dir = trained
    _, examples_uri, _ = digits_examples
    eval_files = split_files(examples_uri, "eval")
    own = task.evaluate_loaded(task.load_export(export_dir), eval_files)
    tfma = tfma_scoring.evaluate_exports(task, {"candidate": export_dir}, eval_files,
                                         str(tmp_path))["candidate"]
    keys = [k for k in own if k.startswith(("precision/", "recall/"))]
    assert len(keys) >= 15  # digits: ten classes, most predicted at least once
    for key in ["accuracy", "balanced_accuracy", "macro_f1", *keys]:
        assert tfma[key] == pytest.approx(own[key], abs=1e-6), key
