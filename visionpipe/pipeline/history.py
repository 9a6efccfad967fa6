"""Run history from ML Metadata: one row per pipeline run (time, span, data counts, the gate
metric, blessed or not, the pushed version), oldest first."""
from __future__ import annotations

import datetime
import os
from typing import Any, Dict, List

from visionpipe.pipeline import summary as run_summary


def list_runs(paths, config) -> List[Dict[str, Any]]:
    if not os.path.exists(paths.metadata_path):
        return []
    store = run_summary._store(paths.metadata_path)
    rows = []
    for run in run_summary.pipeline_runs(store, config.name):
        art = run_summary.run_artifacts(store, run)
        result = run_summary.build_summary(paths, config, art)
        data = result.get("data") or {}
        evaluation = result.get("evaluation") or {}
        push = result.get("push") or {}
        metric = evaluation.get("gate_metric")
        rows.append({
            "run_id": run.name,
            "started": datetime.datetime.fromtimestamp(run.create_time_since_epoch / 1000)
                       .isoformat(timespec="seconds"),
            "span": data.get("span"),
            "splits": data.get("splits", {}),
            "gate_metric": metric,
            "gate_value": (evaluation.get("metrics") or {}).get(metric) if metric else None,
            "blessed": evaluation.get("blessed"),
            "pushed_version": push.get("version") if push.get("pushed") else None,
            "not_pushed_reason": push.get("reason") if push and not push.get("pushed") else None,
        })
    return rows


def format_runs(rows: List[Dict[str, Any]]) -> str:
    header = f"{'started':<20} {'span':>4}  {'examples':<22} {'gate':<24} {'blessed':<8} pushed"
    lines = [header]
    for row in rows:
        splits = ", ".join(f"{k}={v}" for k, v in sorted(row["splits"].items())) or "-"
        gate = (f"{row['gate_metric']} {row['gate_value']:.4f}" if row["gate_value"] is not None
                else "-")
        blessed = {True: "yes", False: "no", None: "-"}[row["blessed"]]
        pushed = (f"version {row['pushed_version']}" if row["pushed_version"]
                  else (row["not_pushed_reason"] or "-"))
        span = "-" if row["span"] is None else str(row["span"])
        lines.append(f"{row['started']:<20} {span:>4}  {splits:<22} {gate:<24} {blessed:<8} {pushed}")
    return "\n".join(lines)
