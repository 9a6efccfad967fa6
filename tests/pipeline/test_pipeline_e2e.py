"""Whole TFX runs (LocalDagRunner, SQLite MLMD) on real digits: gate, load check, push."""
import json
import os
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from visionpipe.cli import pipeline_commands as commands
from visionpipe.cli.main import main
from visionpipe.core.config import load_config

pytestmark = pytest.mark.e2e


def _config(tmp, *overrides):
    return load_config("configs/digits.yaml", [
        "name=digits_e2e", "data.num_images=400", "data.image_size=16", "model.image_size=16",
        "model.width=8", "train.epochs=6", "train.batch_size=32",
        "evaluate.thresholds={accuracy: 0.6}", "evaluate.max_drops={accuracy: 0.1}",
        f"runner.output_dir={tmp}/runs", f"push.serving_root={tmp}/serving", *overrides])


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("e2e")
    good = commands._run(_config(tmp))[1]
    versions_after_good = sorted(os.listdir(tmp / "serving" / "digits_e2e"))
    bad = commands._run(_config(tmp, "train.epochs=0"))[1]
    versions_after_bad = sorted(os.listdir(tmp / "serving" / "digits_e2e"))
    better = commands._run(_config(tmp, "train.seed=43", "train.epochs=7"))[1]
    versions_after_better = sorted(os.listdir(tmp / "serving" / "digits_e2e"))
    # the same run again with only an evaluate.* key changed: TFX's cache reuses the
    # Trainer's model, the Evaluator re-runs
    again = commands._run(_config(tmp, "train.seed=43", "train.epochs=7",
                                  "evaluate.max_drops={accuracy: 0.15}"))[1]
    return {"tmp": tmp, "good": good, "bad": bad, "better": better, "again": again,
            "after_good": versions_after_good, "after_bad": versions_after_bad,
            "after_better": versions_after_better,
            "after_again": sorted(os.listdir(tmp / "serving" / "digits_e2e"))}


def test_trained_model_is_blessed_load_checked_and_pushed_as_version_1(runs):
    good = runs["good"]
    assert good["data"]["splits"]["train"] + good["data"]["splits"]["eval"] == 400
    assert good["data"]["quarantined"] == 0
    assert good["evaluation"]["blessed"] is True
    assert good["evaluation"]["metrics"]["accuracy"] >= 0.6
    assert good["load_check"]["passed"] is True
    assert good["push"]["pushed"] is True and good["push"]["version"] == "1"
    assert runs["after_good"] == ["1"]


def test_pushed_model_answers_correctly(runs):
    from visionpipe.models import data
    from visionpipe.core.examples import records, split_files

    pushed = runs["good"]["push"]["path"]
    eval_files = split_files(runs["good"]["data"]["examples_uri"], "eval")
    images = data.raw_images(eval_files, 60)
    from visionpipe.core import features
    labels = [int(features.parse_single(r, [features.LABEL])[features.LABEL][0])
              for r in records(eval_files).take(60)]
    outputs = commands.predict_saved_model(pushed, images)
    accuracy = np.mean(outputs["top_k_ids"][:, 0] == np.array(labels))
    assert accuracy >= 0.6


def test_deliberately_bad_model_is_not_blessed_and_not_pushed(runs):
    bad = runs["bad"]
    assert bad["evaluation"]["blessed"] is False
    assert any("accuracy" in failure for failure in bad["evaluation"]["failures"])
    # judged against the blessed first model (found by TFX's latest-blessed resolver) and
    # against the trivial predictor, both shown in the gate table
    assert bad["evaluation"]["baseline"]["accuracy"] == good_accuracy(runs)
    row = bad["evaluation"]["gate"][0]
    assert row["metric"] == "accuracy" and row["baseline"] == good_accuracy(runs)
    assert 0.0 < row["trivial"] < 0.3  # ten digit classes: the majority class is about 0.1
    assert bad["push"]["pushed"] is False
    assert "evaluator did not bless" in bad["push"]["reason"]
    assert runs["after_bad"] == ["1"]


def good_accuracy(runs):
    return runs["good"]["evaluation"]["metrics"]["accuracy"]


def test_second_good_model_is_pushed_as_a_new_version_while_the_old_stays(runs):
    better = runs["better"]
    assert better["evaluation"]["blessed"] is True
    assert better["push"]["version"] == "2"
    serving = runs["tmp"] / "serving" / "digits_e2e"
    assert sorted(os.listdir(serving)) == ["1", "2"]
    assert (serving / "1" / "saved_model.pb").exists()


def test_a_rerun_with_nothing_new_pushes_no_new_version(runs):
    again = runs["again"]
    assert again["push"]["pushed"] is False
    assert again["push"]["reason"].startswith("identical to version 2")
    assert runs["after_again"] == runs["after_better"] == ["1", "2"]
    # (the DataGate re-runs: its drift baseline, the previous run's statistics, is new)
    assert {"ImageExampleGen", "StatisticsGen", "Trainer"} <= set(again["cached_components"])
    assert "Evaluator" not in again["cached_components"]
    from visionpipe.pipeline import summary
    assert summary.pushed_path(again).endswith(os.path.join("digits_e2e", "2"))


def test_run_history_lists_every_run_with_its_verdict_and_pushed_version(runs, capsys):
    overrides = ["name=digits_e2e", f"runner.output_dir={runs['tmp']}/runs"]
    assert main(["runs", "--config", "configs/digits.yaml", *overrides, "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["blessed"] for r in rows] == [True, False, True, True]
    assert [r["pushed_version"] for r in rows] == ["1", None, "2", None]
    assert rows[3]["not_pushed_reason"].startswith("identical to version 2")
    assert rows[0]["splits"]["train"] + rows[0]["splits"]["eval"] == 400
    assert rows[0]["gate_metric"] == "accuracy" and rows[0]["gate_value"] >= 0.6
    assert main(["runs", "--config", "configs/digits.yaml", *overrides]) == 0
    table = capsys.readouterr().out.splitlines()
    assert len(table) == 5 and "version 2" in table[3] and "evaluator did not bless" in table[2]


def test_summary_is_saved_next_to_the_resolved_config(runs):
    run_dir = Path(runs["better"]["run_dir"])
    assert (run_dir / "summary.json").exists()
    saved = load_config(run_dir / "config.yaml")
    assert saved.train.seed == 43


def test_ingest_cli_reports_quarantined_files_by_name_and_fails_readably(tmp_path, capsys):
    from visionpipe.datasets import shapes

    images = tmp_path / "images"
    shapes.write_classification_folder(images, 30, 32, seed=3, classes=["circle", "square"])
    (images / "circle" / "broken.png").write_text("not an image")
    args = ["ingest", "--config", "configs/classification.yaml", "data.source=folder",
            f"data.path={images}", "name=ingest_e2e", f"runner.output_dir={tmp_path}/runs"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "broken.png" in err and "max_bad_fraction" in err
    assert "Traceback" not in err
    assert main(args + ["data.max_bad_fraction=0.1"]) == 0
    out = capsys.readouterr().out
    assert "quarantined 1" in out and "train" in out and "metadata.sqlite" in out


class _PageImages(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])


def test_run_report_page_shows_decodable_pngs_with_class_names_and_learning_rate(runs):
    from PIL import Image

    last = runs["again"]  # every run of the module writes the same run folder's report
    page = Path(last["report"])
    assert page == Path(last["run_dir"]) / "report" / "index.html"
    parser = _PageImages()
    text = page.read_text()
    parser.feed(text)
    assert {"results.png", "confusion_matrix.png", "confusion_matrix_normalised.png",
            "pr_curves.png", "roc_curves.png", "val_batch0_pred.png"} <= set(parser.sources)
    for source in parser.sources:
        with Image.open(page.parent / source) as image:
            image.load()
            assert image.width > 100 and image.height > 100
    assert sorted(os.listdir(page.parent)) == sorted(set(parser.sources) | {"index.html"})
    for section in ("examples per split and class", "gate: BLESSED", "precision, recall and F1",
                    "which data and models this run used", last["data"]["examples_uri"]):
        assert section in text
    metrics = runs["better"]["evaluation"]["metrics"]
    assert "precision/7" in metrics and "recall/0" in metrics  # digits' classes are "0".."9"
    assert not [key for key in metrics if "classId" in key or "\n" in key]
    model_uri = Path(runs["better"]["model_uri"])
    training = json.loads((model_uri.parent.parent / "model_run"
                           / model_uri.name / "training_summary.json").read_text())
    assert len(training["history"]["learning_rate"]) == len(training["history"]["loss"]) == 7
    assert training["phase_epochs"] == {"phase1": 7}
    assert runs["better"]["training"]["tensorboard"].startswith("tensorboard --logdir ")
