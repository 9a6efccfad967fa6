"""The run summary states what the reports found (no pipeline run: built from dicts and files)."""
import json
from types import SimpleNamespace

from visionpipe.pipeline import summary


def test_summary_prints_the_warnings_of_the_ingest_and_of_the_data_gate(tmp_path):
    ingest_dir, gate_dir = tmp_path / "quarantine", tmp_path / "gate"
    ingest_dir.mkdir()
    gate_dir.mkdir()
    (ingest_dir / "quarantine.json").write_text(json.dumps({
        "total_inputs": 40, "quarantined_count": 3, "duplicate_count": 2,
        "counts_by_reason": {"bad_image": 2, "too_small": 1},
        "images_by_class": {"cat": {"train": 25, "eval": 5}, "dog": {"train": 4, "eval": 1},
                            "zebra": {"train": 0, "eval": 0}},
        "warnings": ["class(es) ['zebra'] have no training image"]}))
    (gate_dir / "report.json").write_text(json.dumps({"warnings": [
        "split 'train': classes with no example: ['zebra']"]}))

    warnings = summary.gather_warnings(
        summary._read_report(SimpleNamespace(uri=str(ingest_dir)), "quarantine.json"),
        summary._read_report(SimpleNamespace(uri=str(gate_dir)), "report.json"), "/r/quarantine.json")
    text = summary.format_summary({"pipeline": "p", "task": "classification", "warnings": warnings})

    lines = [line.strip() for line in text.splitlines()]
    assert ("warnings               - ingest: 3 of 40 inputs quarantined (bad_image: 2, "
            "too_small: 1) (see /r/quarantine.json)") in lines
    assert "- ingest: 2 duplicate image(s) set aside (see /r/quarantine.json)" in lines
    assert "- ingest: class(es) with fewer than 10 training images: 'dog' 4" in lines
    assert "- ingest: class(es) ['zebra'] have no training image" in lines
    assert "- data validation: split 'train': classes with no example: ['zebra']" in lines
    assert summary._read_report(None, "report.json") is None
    assert summary.gather_warnings(None, None) == []


def test_summary_states_quarantined_and_duplicates_as_separate_facts_and_a_skipped_load_check():
    text = summary.format_summary({
        "pipeline": "p", "task": "classification",
        "data": {"splits": {"train": 10}, "quarantined": 4, "duplicates": 1,
                 "quarantine_report": "/r/quarantine.json"},
        "load_check": {"passed": False, "skipped": True, "detail": "the evaluator did not bless the model"}})

    assert "quarantined 4, duplicates 1  /r/quarantine.json" in text
    assert "(duplicates" not in text
    assert "load check             skipped: the evaluator did not bless the model" in text
    assert "FAILED" not in text
    failed = summary.format_summary({"pipeline": "p", "task": "classification", "load_check": {
        "passed": False, "skipped": False, "detail": "probe exited 1"}})
    assert "load check             FAILED: probe exited 1" in failed


def test_summary_shows_segmentation_details_per_class_by_size_and_where_the_overlays_are():
    text = summary.format_summary({"pipeline": "p", "task": "segmentation", "evaluation": {
        "gate": [], "blessed": True, "report": "/a/evaluation/report.json",
        "details": {"per_class": {"membrane": {"iou": 0.5, "dice": 0.667},
                                  "interior": {"iou": 0.9, "dice": 0.947}},
                    "by_image_size": {"512x512": {"examples": 6, "miou": 0.7}},
                    "boundary_f1": {"tolerance_px": 2, "precision": 0.5, "recall": 0.25, "f1": 1 / 3},
                    "overlays": ["overlays/eval_000.png", "overlays/eval_001.png"]}}})
    assert "membrane 0.500/0.667, interior 0.900/0.947" in text
    assert "512x512 0.700 (n=6)" in text
    assert "boundary F1 (2 px)     0.333 (precision 0.500, recall 0.250)" in text
    assert "2 (image | truth | prediction) in /a/evaluation/overlays" in text


def test_summary_names_the_run_report_and_the_tensorboard_command():
    text = summary.format_summary({
        "pipeline": "p", "task": "classification", "report": "/runs/p/report/index.html",
        "training": {"num_train": 8, "tensorboard": "tensorboard --logdir /runs/p/model_run/4"}})
    assert "training curves        tensorboard --logdir /runs/p/model_run/4" in text
    assert "run report             /runs/p/report/index.html" in text
