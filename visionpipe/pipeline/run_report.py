"""The run report: ``<run_dir>/report/index.html`` and the PNGs it shows, from what the run's
artifacts hold: training curves (Trainer), the data (ImageExampleGen's quarantine report,
the DataGate's warnings), the gate and the task's own evaluation panels (Evaluator,
``Task.report_panels``), the optimization table and the lineage."""
from __future__ import annotations

import json
import os
import shutil
from typing import Any, Dict, List

import visionpipe  # noqa: F401

from visionpipe.report import Panel, Section, panels, write_page

REPORT_FOLDER = "report"
TRAINING_SUMMARY = "training_summary.json"


def write_run_report(summary: Dict[str, Any], config) -> str:
    """Write the report of the run ``summary`` describes; returns the page's path."""
    from visionpipe.pipeline.summary import latest_run_artifacts

    report_dir = os.path.join(summary["run_dir"], REPORT_FOLDER)
    shutil.rmtree(report_dir, ignore_errors=True)  # an earlier run's PNGs are not this run's
    os.makedirs(report_dir)
    art = latest_run_artifacts(summary["metadata"], config.name)
    sections = [Section("data", _data_panels(summary, art)),
                Section("training", _training_panels(art, report_dir)),
                Section("evaluation", _evaluation_panels(summary, art, config, report_dir)),
                Section("optimization", _optimization_panels(summary)),
                Section("lineage", _lineage_panels(summary, art))]
    title = f"VisionPipe run report: {summary['pipeline']} ({summary['task']})"
    return write_page(report_dir, title, [s for s in sections if s.panels])


def _json(artifact, name: str):
    path = os.path.join(artifact.uri, name) if artifact is not None else ""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def _warnings(summary: Dict[str, Any]) -> List[str]:
    """The run's data warnings (ingestion and the DataGate), as the summary lists them."""
    return list(summary.get("warnings", []))


def _data_panels(summary, art) -> List[Panel]:
    quarantine = _json(art.get("visionpipe.QuarantineReport"), "quarantine.json") or {}
    splits = sorted((summary.get("data") or {}).get("splits", {}))
    by_class = quarantine.get("images_by_class") or {}
    out = [Panel("examples per split and class", headers=("class", *splits),
                 rows=[(name, *(counts.get(s, 0) for s in splits)) for name, counts in by_class.items()]
                 + [("all", *(summary["data"]["splits"][s] for s in splits))])] if splits else []
    set_aside = [(q.get("file"), q.get("kind"), q.get("reason")) for q in
                 quarantine.get("quarantined", [])] + [
        (d.get("file"), "duplicate", f"a copy of {d.get('duplicate_of')}")
        for d in quarantine.get("duplicates", [])]
    out.append(Panel(f"quarantined and duplicate inputs ({len(set_aside)})",
                     headers=("file", "kind", "reason") if set_aside else (), rows=set_aside,
                     note="" if set_aside else "none"))
    warnings = _warnings(summary)
    out.append(Panel("warnings", note="\n".join(f"- {w}" for w in warnings) or "none"))
    return out


def _training_panels(art, report_dir) -> List[Panel]:
    run = art.get("ModelRun")
    training = _json(run, TRAINING_SUMMARY)
    if not training or not training.get("history"):
        return []
    phases = training.get("phase_epochs") or {}
    note = (f"{training.get('num_train')} training images, {training.get('replicas')} replica(s), "
            f"{training.get('precision')}, {training.get('seconds')} s; epochs per phase: "
            + (", ".join(f"{k} {v}" for k, v in phases.items()) or "-")
            + f"\nTensorBoard: tensorboard --logdir {run.uri}")
    return [Panel("training curves (train and validation per epoch)", note=note, images=[
        panels.history_png(training["history"], phases, report_dir, "results.png")])]


def _verdict(metric: str, failures: List[str]) -> str:
    return "FAIL" if any(f.startswith(f"{metric}:") for f in failures) else "pass"


def _evaluation_panels(summary, art, config, report_dir) -> List[Panel]:
    from visionpipe.core.examples import read_class_names
    from visionpipe.tasks import get_task

    ev = summary.get("evaluation")
    if not ev:
        return []
    failures = ev.get("failures", [])
    rows = [(r["metric"], r["model"], r["threshold"], r["trivial"], r["baseline"],
             None if r["baseline"] is None or r["model"] is None else r["model"] - r["baseline"],
             r["max_drop"], _verdict(r["metric"], failures)) for r in ev.get("gate", [])]
    verdict = "BLESSED" if ev.get("blessed") else "NOT BLESSED"
    out = [Panel(f"gate: {verdict}", headers=("metric", "model", "threshold", "trivial",
                                              "baseline", "change", "max drop", "verdict"),
                 rows=rows, note="\n".join([*failures, *(f"note: {n}" for n in ev.get("notes", []))]))]
    examples = art.get("Examples")
    if examples is not None:
        task = get_task(config, read_class_names(examples.uri))
        out += task.report_panels(ev, os.path.dirname(ev["report"]), report_dir)
    if ev.get("robustness"):
        from visionpipe.components.evaluator import robustness

        out += robustness.panels_of(ev["robustness"], os.path.dirname(ev["report"]), report_dir)
    metrics = ev.get("metrics") or {}
    out.append(Panel("all metrics of the candidate", headers=("metric", "value"),
                     rows=sorted(metrics.items())))
    return out


def _optimization_panels(summary) -> List[Panel]:
    optimization = summary.get("optimization")
    if not optimization:
        return []
    lines = [line.strip().strip("|") for line in optimization.get("table", "").splitlines()
             if line.strip().startswith("|") and not set(line.strip()) <= set("|-: ")]
    cells = [[c.strip() for c in line.split("|")] for line in lines]
    return [Panel("optimized models", headers=cells[0] if cells else (), rows=cells[1:],
                  note="blessed TFLite files: " + (", ".join(optimization["blessed_files"]) or "none")
                  + f"\nreport: {optimization['report']}")]


def _lineage_panels(summary, art) -> List[Panel]:
    from tfx.components.evaluator import constants

    from visionpipe.pipeline.summary import _prop

    blessing = art.get("ModelBlessing")
    push = summary.get("push") or {}
    rows = [("Examples", (summary.get("data") or {}).get("examples_uri", "-")),
            ("candidate model", summary.get("model_uri", "-")),
            ("baseline (latest blessed model)",
             _prop(blessing, constants.ARTIFACT_PROPERTY_BASELINE_MODEL_URI_KEY, "") or "none (first blessed model)"),
            ("evaluation", (summary.get("evaluation") or {}).get("report", "-")),
            ("pushed", push.get("path") if push.get("pushed") else push.get("reason") or "-"),
            ("ML Metadata store", summary.get("metadata", "-"))]
    return [Panel("which data and models this run used", headers=("what", "where"), rows=rows)]
