"""The end-of-run summary, read back from ML Metadata: data counts, quarantined items,
metrics against thresholds, blessed or not and why, and where the model was pushed."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import visionpipe  # noqa: F401
from visionpipe.components.image_example_gen.report import TRAIN_SPLIT

SUMMARY_FILE = "summary.json"


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def pipeline_runs(store, pipeline_name: str) -> List[Any]:
    """The pipeline_run contexts of a pipeline, oldest first."""
    pipeline_ids = {c.id for c in store.get_contexts_by_type("pipeline") if c.name == pipeline_name}
    all_runs = store.get_contexts_by_type("pipeline_run")
    runs = [c for c in all_runs
            if any(p.id in pipeline_ids for p in store.get_parent_contexts_by_context(c.id))]
    runs = runs or all_runs  # older stores without parent links: one pipeline per store
    return sorted(runs, key=lambda c: (c.create_time_since_epoch, c.id))


def run_artifacts(store, run) -> Dict[str, Any]:
    """{artifact type name: newest artifact of that type in one run}."""
    types = {t.id: t.name for t in store.get_artifact_types()}
    newest: Dict[str, Any] = {}
    for artifact in store.get_artifacts_by_context(run.id):
        name = types.get(artifact.type_id, "")
        if name not in newest or artifact.id > newest[name].id:
            newest[name] = artifact
    return newest


def latest_run_artifacts(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """{artifact type name: newest artifact of that type in the newest run of the pipeline}."""
    store = _store(metadata_path)
    runs = pipeline_runs(store, pipeline_name)
    return run_artifacts(store, runs[-1]) if runs else {}


def _prop(artifact, key: str, default=None):
    if artifact is None or key not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def build_summary(paths, config, art: Optional[Dict[str, Any]] = None) -> Dict[str, Any]:
    """The summary of the newest run, or of the run whose artifacts ``art`` are."""
    if art is None:
        art = latest_run_artifacts(paths.metadata_path, config.name)
    summary: Dict[str, Any] = {"pipeline": config.name, "task": config.task,
                               "run_dir": paths.run_dir, "metadata": paths.metadata_path}
    if getattr(paths, "cached", None):
        summary["cached_components"] = list(paths.cached)
    examples = art.get("Examples")
    if examples is not None:
        summary["data"] = {
            "examples_uri": examples.uri,
            "splits": {k[len("num_examples_"):]: int(_prop(examples, k))
                       for k in examples.custom_properties if k.startswith("num_examples_")}}
        if "{SPAN}" in config.data.path and "span" in examples.properties:
            summary["data"]["span"] = int(examples.properties["span"].int_value)
    report = art.get("visionpipe.QuarantineReport")
    if report is not None:
        summary.setdefault("data", {})["quarantined"] = int(_prop(report, "quarantined_count", 0))
        summary["data"]["duplicates"] = int(_prop(report, "duplicate_count", 0))
        summary["data"]["quarantine_report"] = os.path.join(report.uri, "quarantine.json")
    ingest_report = _read_report(report, "quarantine.json")
    shares = (ingest_report or {}).get("pixel_share_by_class")
    if shares:
        summary["data"]["pixel_share_by_class"] = shares
    warnings = gather_warnings(ingest_report,
                               _read_report(art.get("visionpipe.DataValidationReport"), "report.json"),
                               summary.get("data", {}).get("quarantine_report", ""))
    if warnings:
        summary["warnings"] = warnings
    model = art.get("Model")
    if model is not None:
        summary["model_uri"] = model.uri
    run = art.get("ModelRun")
    if run is not None:
        training_file = os.path.join(run.uri, "training_summary.json")
        if os.path.exists(training_file):
            with open(training_file) as f:
                training = json.load(f)
            summary["training"] = {k: training[k] for k in
                                   ("num_train", "num_eval", "replicas", "precision", "seconds",
                                    "weights_loaded") if k in training}
            summary["training"]["tensorboard"] = f"tensorboard --logdir {run.uri}"
    evaluation_artifact = art.get("ModelEvaluation")
    blessing = art.get("ModelBlessing")
    if evaluation_artifact is not None:
        summary["evaluation"] = _evaluation(evaluation_artifact, blessing)
    infra = art.get("InfraBlessing")
    if infra is not None:
        summary["load_check"] = {"passed": bool(_prop(infra, "blessed", 0)),
                                 "skipped": bool(_prop(infra, "skipped", 0)),
                                 "detail": _prop(infra, "reason", "")}
    optimized = art.get("visionpipe.OptimizedModels")
    if optimized is not None:
        markdown = os.path.join(optimized.uri, "report.md")
        summary["optimization"] = {
            "blessed_files": json.loads(_prop(optimized, "blessed_files", "[]") or "[]"),
            "report": os.path.join(optimized.uri, "report.json"),
            "table": open(markdown).read() if os.path.exists(markdown) else ""}
    pushed = art.get("PushedModel")
    if pushed is not None:
        summary["push"] = {"pushed": bool(_prop(pushed, "pushed", 0)),
                           "path": _prop(pushed, "pushed_destination", ""),
                           "version": _prop(pushed, "pushed_version", ""),
                           "reason": _prop(pushed, "not_pushed_reason", ""),
                           "identical_to_version": _prop(pushed, "identical_to_version", 0)}
    return summary


def pixel_share_text(shares: Dict[str, float], shown: int = 12) -> str:
    """``background 71.2%, cat 20.1%, ...``: the classes with pixels, largest share first."""
    present = sorted(((n, v) for n, v in shares.items() if v), key=lambda nv: -nv[1])
    return (", ".join(f"{name} {value:.1%}" for name, value in present[:shown])
            + (" ..." if len(present) > shown else "")) or "-"


#: a class with fewer training images than this is named in the warnings
FEW_TRAINING_IMAGES = 10


def _read_report(artifact, filename: str) -> Optional[dict]:
    """The JSON report ``filename`` in ``artifact``'s folder, None without one."""
    path = os.path.join(artifact.uri, filename) if artifact is not None else ""
    if not path or not os.path.exists(path):
        return None
    with open(path) as f:
        return json.load(f)


def gather_warnings(ingest_report: Optional[dict], gate_report: Optional[dict],
                    ingest_report_path: str = "") -> List[str]:
    """What a run should not pass over in silence, one sentence each: inputs quarantined or
    set aside as duplicates, classes with few training images, the ingest's own warnings
    and the DataGate's (a class absent from a split, class imbalance, unused accept rules).
    From the two reports' dicts (quarantine.json, the DataGate's report.json)."""
    warnings: List[str] = []
    ingest = ingest_report or {}
    where = f" (see {ingest_report_path})" if ingest_report_path else ""
    quarantined = int(ingest.get("quarantined_count", 0))
    if quarantined:
        reasons = ", ".join(f"{k}: {v}" for k, v in ingest.get("counts_by_reason", {}).items())
        warnings.append(f"ingest: {quarantined} of {ingest.get('total_inputs', '?')} inputs "
                        f"quarantined ({reasons}){where}")
    duplicates = int(ingest.get("duplicate_count", 0))
    if duplicates:
        warnings.append(f"ingest: {duplicates} duplicate image(s) set aside{where}")
    few = {name: counts.get(TRAIN_SPLIT, 0) for name, counts in ingest.get("images_by_class", {}).items()
           if 0 < counts.get(TRAIN_SPLIT, 0) < FEW_TRAINING_IMAGES}
    if few:
        shown = ", ".join(f"{name!r} {count}" for name, count in few.items())
        warnings.append(f"ingest: class(es) with fewer than {FEW_TRAINING_IMAGES} training "
                        f"images: {shown}")
    warnings += [f"ingest: {w}" for w in ingest.get("warnings", [])]
    warnings += [f"data validation: {w}" for w in (gate_report or {}).get("warnings", [])]
    return warnings


def _evaluation(artifact, blessing) -> Dict[str, Any]:
    from visionpipe.components.evaluator.spec import REPORT_FILE

    path = os.path.join(artifact.uri, REPORT_FILE)
    with open(path) as f:
        report = json.load(f)
    if blessing is not None:
        report["blessed"] = bool(_prop(blessing, "blessed", 0))
    report["report"] = path
    return report


def format_summary(summary: Dict[str, Any]) -> str:
    lines: List[str] = ["", f"VisionPipe run summary — {summary['pipeline']} ({summary['task']})"]
    row = "  {:<22} {}".format
    data = summary.get("data", {})
    if data:
        splits = ", ".join(f"{k}={v}" for k, v in sorted(data.get("splits", {}).items()))
        span = f"  (span {data['span']})" if "span" in data else ""
        lines.append(row("examples", (splits or "-") + span))
        lines.append(row("inputs set aside", f"quarantined {data.get('quarantined', 0)}, "
                                             f"duplicates {data.get('duplicates', 0)}  "
                                             f"{data.get('quarantine_report', '')}"))
    for split, shares in sorted(data.get("pixel_share_by_class", {}).items()):
        lines.append(row(f"pixel share ({split})", pixel_share_text(shares)))
    for i, warning in enumerate(summary.get("warnings", [])):
        lines.append(row("warnings" if i == 0 else "", f"- {warning}"))
    training = summary.get("training")
    if training:
        lines.append(row("training", f"{training.get('num_train')} images, {training.get('replicas')} "
                                     f"replica(s), {training.get('precision')}, {training.get('seconds')}s"))
        lines.append(row("started from", training.get("weights_loaded") or "scratch (random weights)"))
    ev = summary.get("evaluation")
    if ev:
        from visionpipe.components.evaluator.gate import format_table

        lines.append(row("gate", f"{ev.get('gate_metric')} on the {ev.get('split')} split; "
                                 f"must beat the trivial predictor by "
                                 f"{ev.get('min_margin_over_trivial')}"))
        lines.extend("    " + line for line in format_table(ev.get("gate", [])))
        metrics = ev.get("metrics") or {}
        per_label_ap = {k[3:]: v for k, v in metrics.items() if k.startswith("ap/")}
        if per_label_ap:  # AP by label name, each with its chance level where known
            lines.append(row("AP per label", ", ".join(
                f"{name} {value:.3f}" + (f" (chance {metrics['positive_rate/' + name]:.2f})"
                                         if "positive_rate/" + name in metrics else "")
                for name, value in per_label_ap.items())))
        robust = (ev.get("robustness") or {}).get("metrics") or {}
        if robust:  # evaluate.robustness: the gate metric per condition
            lines.append(row(f"robustness ({ev.get('gate_metric')})", ", ".join(
                f"{name} {value:.3f}" for name, value in robust.items() if value is not None)))
        robustness = (ev.get("details") or {}).get("occlusion") or {}
        if robustness:
            shown = ", ".join(f"{k.split('/')[0].replace('occluded_', '')}% {v:.3f}"
                              for k, v in sorted(robustness.items(), key=lambda kv: int(
                                  kv[0].split("/")[0].replace("occluded_", "")))
                              if k.endswith("/map_50") and v is not None)
            lines.append(row("occlusion mAP@.5", shown))
        details = ev.get("details") or {}
        per_class = details.get("per_class") or {}
        if per_class:  # segmentation: IoU / Dice by class name over the eval pixels
            lines.append(row("IoU / Dice per class", ", ".join(
                f"{name} {v['iou']:.3f}/{v['dice']:.3f}" for name, v in per_class.items())))
        by_size = details.get("by_image_size") or {}
        if by_size:
            lines.append(row("mIoU by image size", ", ".join(
                f"{key} {v['miou']:.3f} (n={v['examples']})" for key, v in by_size.items())))
        edges = details.get("boundary_f1") or {}
        if edges.get("f1") is not None:
            lines.append(row(f"boundary F1 ({edges.get('tolerance_px')} px)",
                             f"{edges['f1']:.3f} (precision {edges['precision']:.3f}, "
                             f"recall {edges['recall']:.3f})"))
        if details.get("overlays") and ev.get("report"):
            folder = os.path.dirname(ev["report"])
            lines.append(row("overlays", f"{len(details['overlays'])} (image | truth | prediction) "
                                         f"in {os.path.join(folder, os.path.dirname(details['overlays'][0]))}"))
        if details.get("neighbours_image") and ev.get("report"):
            shown = details.get("neighbours") or []
            same = sum(n["same_identity"] for q in shown for n in q["neighbours"])
            total = sum(len(q["neighbours"]) for q in shown)
            lines.append(row("query neighbours", f"{len(shown)} queries x top {details.get('k')}, "
                                                 f"{same}/{total} same identity, in "
                             f"{os.path.join(os.path.dirname(ev['report']), details['neighbours_image'])}"))
        verdict = "BLESSED" if ev.get("blessed") else "NOT BLESSED"
        lines.append(row("evaluation", verdict))
        for failure in ev.get("failures", [])[:10]:
            lines.append(row("", f"- {failure}"))
        for note in ev.get("notes", [])[:10]:
            lines.append(row("", f"  note: {note}"))
    optimization = summary.get("optimization")
    if optimization:
        lines.append(row("optimization", "blessed TFLite files: " +
                         (", ".join(optimization["blessed_files"]) or "none") +
                         f"  ({optimization['report']})"))
        lines.extend("    " + line for line in optimization["table"].strip().splitlines())
    check = summary.get("load_check")
    if check:
        verdict = "passed" if check["passed"] else "skipped" if check.get("skipped") else "FAILED"
        lines.append(row("load check", f"{verdict}: {check['detail']}"))
    if training and training.get("tensorboard"):
        lines.append(row("training curves", training["tensorboard"]))
    if summary.get("report"):
        lines.append(row("run report", summary["report"]))
    push = summary.get("push")
    if push:
        lines.append(row("push", f"version {push['version']} -> {push['path']}" if push["pushed"]
                         else f"not pushed: {push['reason']}"))
    return "\n".join(lines)


def write_summary(summary: Dict[str, Any], run_dir: str) -> str:
    path = os.path.join(run_dir, SUMMARY_FILE)
    with open(path, "w") as f:
        json.dump(summary, f, indent=2, default=str)
    return path


def pushed_path(summary: Dict[str, Any]) -> Optional[str]:
    """The version this run's model is served from: the one it pushed, or the latest pushed
    version it is identical to (a re-run with nothing new pushes nothing)."""
    push = summary.get("push") or {}
    return push.get("path") if push.get("pushed") or push.get("identical_to_version") else None
