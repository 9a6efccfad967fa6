"""The end-of-run summary, read back from ML Metadata: data counts, quarantined items,
metrics against thresholds, blessed or not and why, and where the model was pushed."""
from __future__ import annotations

import json
import os
from typing import Any, Dict, List, Optional

import visionpipe  # noqa: F401

SUMMARY_FILE = "summary.json"


def _store(metadata_path: str):
    from ml_metadata.metadata_store import metadata_store
    from ml_metadata.proto import metadata_store_pb2

    config = metadata_store_pb2.ConnectionConfig()
    config.sqlite.filename_uri = metadata_path
    config.sqlite.connection_mode = metadata_store_pb2.SqliteMetadataSourceConfig.READONLY
    return metadata_store.MetadataStore(config)


def latest_run_artifacts(metadata_path: str, pipeline_name: str) -> Dict[str, Any]:
    """{artifact type name: newest artifact of that type in the newest run of the pipeline}."""
    store = _store(metadata_path)
    pipeline_ids = {c.id for c in store.get_contexts_by_type("pipeline") if c.name == pipeline_name}
    all_runs = store.get_contexts_by_type("pipeline_run")
    runs = [c for c in all_runs
            if any(p.id in pipeline_ids for p in store.get_parent_contexts_by_context(c.id))]
    runs = runs or all_runs  # older stores without parent links: one pipeline per store
    if not runs:
        return {}
    run = max(runs, key=lambda c: (c.create_time_since_epoch, c.id))
    types = {t.id: t.name for t in store.get_artifact_types()}
    newest: Dict[str, Any] = {}
    for artifact in store.get_artifacts_by_context(run.id):
        name = types.get(artifact.type_id, "")
        if name not in newest or artifact.id > newest[name].id:
            newest[name] = artifact
    return newest


def _prop(artifact, key: str, default=None):
    if artifact is None or key not in artifact.custom_properties:
        return default
    value = artifact.custom_properties[key]
    kind = value.WhichOneof("value")
    return getattr(value, kind) if kind else default


def build_summary(paths, config) -> Dict[str, Any]:
    art = latest_run_artifacts(paths.metadata_path, config.name)
    summary: Dict[str, Any] = {"pipeline": config.name, "task": config.task,
                               "run_dir": paths.run_dir, "metadata": paths.metadata_path}
    examples = art.get("Examples")
    if examples is not None:
        summary["data"] = {
            "examples_uri": examples.uri,
            "splits": {k[len("num_examples_"):]: int(_prop(examples, k))
                       for k in examples.custom_properties if k.startswith("num_examples_")}}
    report = art.get("visionpipe.QuarantineReport")
    if report is not None:
        summary.setdefault("data", {})["quarantined"] = int(_prop(report, "quarantined_count", 0))
        summary["data"]["duplicates"] = int(_prop(report, "duplicate_count", 0))
        summary["data"]["quarantine_report"] = os.path.join(report.uri, "quarantine.json")
    warnings = _report_warnings(report, "quarantine.json", "ingest")
    warnings += _report_warnings(art.get("visionpipe.DataValidationReport"), "report.json",
                                 "data validation")
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
                           "reason": _prop(pushed, "not_pushed_reason", "")}
    return summary


def _report_warnings(artifact, filename: str, stage: str) -> List[str]:
    """The ``warnings`` of a JSON report in ``artifact``'s folder, each prefixed by ``stage``."""
    path = os.path.join(artifact.uri, filename) if artifact is not None else ""
    if not path or not os.path.exists(path):
        return []
    with open(path) as f:
        return [f"{stage}: {w}" for w in json.load(f).get("warnings", [])]


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
        lines.append(row("examples", splits or "-"))
        lines.append(row("inputs set aside", f"quarantined {data.get('quarantined', 0)}, "
                                             f"duplicates {data.get('duplicates', 0)}  "
                                             f"{data.get('quarantine_report', '')}"))
    for i, warning in enumerate(summary.get("warnings", [])):
        lines.append(row("warnings" if i == 0 else "", f"- {warning}"))
    training = summary.get("training")
    if training:
        lines.append(row("training", f"{training.get('num_train')} images, {training.get('replicas')} "
                                     f"replica(s), {training.get('precision')}, {training.get('seconds')}s"))
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
    push = summary.get("push") or {}
    return push.get("path") if push.get("pushed") else None
