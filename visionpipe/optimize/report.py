"""Size, gzip size and latency of artifacts, and the optimization report (JSON + Markdown)."""
from __future__ import annotations

import dataclasses
import gzip
import io
import json
import os
import tarfile
from typing import Any, Dict, List, Optional


def size_on_disk(path: str) -> int:
    if os.path.isdir(path):
        return sum(os.path.getsize(os.path.join(root, name))
                   for root, _, names in os.walk(path) for name in names)
    return os.path.getsize(path)


def gzipped_size(path: str) -> int:
    """Bytes after gzip -9 (a directory is tarred first)."""
    if os.path.isdir(path):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=9) as tar:
            tar.add(path, arcname=os.path.basename(path.rstrip("/")))
        return buffer.getbuffer().nbytes
    with open(path, "rb") as f:
        return len(gzip.compress(f.read(), compresslevel=9))


@dataclasses.dataclass
class Artifact:
    name: str  # float_savedmodel, float32, dynamic, float16, int8, pruned, ...
    file: str  # base name inside the output folder ('' for the SavedModel)
    size_bytes: int
    gzip_bytes: int
    metrics: Dict[str, float]
    gate_metric: str
    latency_ms: Optional[float]
    max_drop: Optional[float]  # None: not gated (the baseline itself)
    blessed: bool = False
    notes: Dict[str, Any] = dataclasses.field(default_factory=dict)
    # filled in against the baseline by OptimizationReport.finalize
    metric_drop: Optional[float] = None
    size_ratio: Optional[float] = None
    gzip_ratio: Optional[float] = None
    latency_ratio: Optional[float] = None

    @property
    def metric(self) -> float:
        return self.metrics[self.gate_metric]


@dataclasses.dataclass
class OptimizationReport:
    baseline: str  # name of the artifact every ratio and drop is measured against
    gate_metric: str
    artifacts: List[Artifact] = dataclasses.field(default_factory=list)
    skipped: Dict[str, str] = dataclasses.field(default_factory=dict)  # step -> why
    evaluated_on: str = "eval split"  # the images every file is scored on

    def get(self, name: str) -> Artifact:
        for artifact in self.artifacts:
            if artifact.name == name:
                return artifact
        raise KeyError(f"no artifact {name!r}; have {[a.name for a in self.artifacts]}")

    def finalize(self) -> "OptimizationReport":
        base = self.get(self.baseline)
        for a in self.artifacts:
            a.metric_drop = base.metric - a.metric
            a.size_ratio = a.size_bytes / base.size_bytes
            a.gzip_ratio = a.gzip_bytes / base.gzip_bytes
            if a.latency_ms is not None and base.latency_ms:
                a.latency_ratio = a.latency_ms / base.latency_ms
        return self

    @property
    def blessed_files(self) -> List[str]:
        return [a.file for a in self.artifacts if a.blessed and a.file]

    def to_dict(self) -> Dict[str, Any]:
        return {"baseline": self.baseline, "gate_metric": self.gate_metric,
                "blessed_files": self.blessed_files, "skipped": self.skipped,
                "artifacts": [dataclasses.asdict(a) for a in self.artifacts]}

    def to_markdown(self) -> str:
        lines = [
            f"Baseline: `{self.baseline}`; metric: {self.gate_metric} "
            f"(TFLite interpreter, {self.evaluated_on}); "
            "latency: median batch-1 invoke, TFLite + XNNPACK, 1 thread.",
            "",
            f"| artifact | file | size KiB | gzip KiB | {self.gate_metric} | drop | latency ms "
            "| size x | gzip x | latency x | blessed |",
            "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|",
        ]
        for a in self.artifacts:
            latency = "-" if a.latency_ms is None else f"{a.latency_ms:.3f}"
            latency_ratio = "-" if a.latency_ratio is None else f"{a.latency_ratio:.2f}"
            gate = "baseline" if a.max_drop is None else ("yes" if a.blessed else
                                                           f"no (limit {a.max_drop:.3f})")
            lines.append(
                f"| {a.name} | {a.file or '(SavedModel)'} | {a.size_bytes / 1024:.1f} | "
                f"{a.gzip_bytes / 1024:.1f} | {a.metric:.4f} | {a.metric_drop:+.4f} | {latency} | "
                f"{a.size_ratio:.3f} | {a.gzip_ratio:.3f} | {latency_ratio} | {gate} |")
        for a in self.artifacts:
            if a.notes.get("runtime"):
                nms = ("; NMS inside (ONNX NonMaxSuppression)"
                       if a.notes.get("non_max_suppression_inside") else "")
                lines.append(f"\n`{a.file}` is scored and timed with {a.notes['runtime']} "
                             f"(opset {a.notes.get('opset')}){nms}.")
            attempts = a.notes.get("repair_attempts", [])
            if len(attempts) > 1:
                lines.append(f"\n`{a.file}`: plain int8 scored {attempts[0]['metric']:.4f}; the repair "
                             f"tried {len(attempts) - 1} selective conversion(s) and kept the best "
                             f"({a.metric:.4f}).")
            for cause in a.notes.get("kept_in_float_because", []) if a.notes.get("float_layers") else []:
                consumers = ", ".join(f"`{c}`" for c in cause["consumers"]) or "none"
                lines.append(
                    f"\n`{a.file}` keeps `{cause['tensor_name']}` ({cause['op_name']}) in float: its "
                    f"int8 error is {cause['relative_rmse']:.3f} relative RMSE per channel "
                    f"(RMSE/scale {cause['rmse_over_scale']:.3f}); its consumers stay float with it: "
                    f"{consumers}")
            if a.notes.get("worst_layers") and not a.blessed:
                worst = ", ".join(f"`{w['tensor_name']}` (relative RMSE {w['relative_rmse']:.3f})"
                                  for w in a.notes["worst_layers"][:3])
                lines.append(f"\n`{a.file}` is not blessed; worst int8 layers: {worst}")
        for step, why in self.skipped.items():
            lines.append(f"\n{step} skipped: {why}")
        return "\n".join(lines) + "\n"

    def write(self, output_dir: str) -> None:
        with open(os.path.join(output_dir, "report.json"), "w") as f:
            json.dump(self.to_dict(), f, indent=2, sort_keys=False)
        with open(os.path.join(output_dir, "report.md"), "w") as f:
            f.write(self.to_markdown())
