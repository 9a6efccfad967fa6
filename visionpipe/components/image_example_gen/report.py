"""The quarantine report (quarantine.json) and the bad-fraction gate.

quarantine.json holds every quarantined item as ``{file, kind, reason}``, counts by reason
kind, exact duplicates (``{file, duplicate_of, sha256}``), and the ingest's counts, so one
file explains where every input went: kept (per split), quarantined, or a duplicate.
"""
from __future__ import annotations

import json
import posixpath
from collections import Counter
from typing import Dict, List

REPORT_FILENAME = "quarantine.json"
SHOWN_IN_ERROR = 5


class IngestError(RuntimeError):
    """The ingest ran but its output must not be used; the message says why."""


class QuarantineLimitExceeded(IngestError):
    """More inputs were quarantined than data.max_bad_fraction allows."""


class EmptySplitError(IngestError):
    """A split the pipeline needs received no images."""


def build_report(total: int, quarantined: List[dict], duplicates: List[dict],
                 images_by_split: Dict[str, int], objects_by_split: Dict[str, int],
                 class_names: List[str], split_plan: Dict[str, object]) -> dict:
    quarantined = sorted(quarantined, key=lambda q: (q["file"], q["reason"]))
    duplicates = sorted(duplicates, key=lambda d: d["file"])
    return {
        "total_inputs": total,
        "kept": sum(images_by_split.values()),
        "quarantined_count": len(quarantined),
        "duplicate_count": len(duplicates),
        "bad_fraction": len(quarantined) / total if total else 0.0,
        "counts_by_reason": dict(sorted(Counter(q["kind"] for q in quarantined).items())),
        "images_by_split": dict(images_by_split),  # in the split plan's order
        "objects_by_split": dict(objects_by_split),
        "class_names": list(class_names),
        "split_plan": split_plan,
        "quarantined": quarantined,
        "duplicates": duplicates,
    }


def write_report(report: dict, report_dir: str) -> str:
    import tensorflow as tf

    tf.io.gfile.makedirs(report_dir)
    path = posixpath.join(report_dir, REPORT_FILENAME)
    with tf.io.gfile.GFile(path, "w") as f:
        json.dump(report, f, indent=2)
    return path


def read_report(report_dir: str) -> dict:
    import tensorflow as tf

    with tf.io.gfile.GFile(posixpath.join(report_dir, REPORT_FILENAME), "r") as f:
        return json.load(f)


def check_report(report: dict, report_path: str, max_bad_fraction: float,
                 required_splits: List[str]) -> None:
    """Raise one readable error when too much was quarantined or a split is empty."""
    count, total = report["quarantined_count"], report["total_inputs"]
    if count and report["bad_fraction"] > max_bad_fraction:
        shown = "\n".join(f"  {q['file']}: {q['reason']}" for q in report["quarantined"][:SHOWN_IN_ERROR])
        more = f"\n  ... and {count - SHOWN_IN_ERROR} more" if count > SHOWN_IN_ERROR else ""
        reasons = ", ".join(f"{k}: {v}" for k, v in report["counts_by_reason"].items())
        raise QuarantineLimitExceeded(
            f"{count} of {total} inputs ({report['bad_fraction']:.1%}) were quarantined, more than "
            f"data.max_bad_fraction={max_bad_fraction:g} allows ({reasons}).\n"
            f"Report: {report_path}\n{shown}{more}\n"
            "Fix or remove these files, or raise data.max_bad_fraction to train without them.")
    empty = [s for s in required_splits if not report["images_by_split"].get(s)]
    if empty:
        raise EmptySplitError(
            f"split(s) {empty} received no images ({report['kept']} kept: "
            f"{report['images_by_split']}); add images or change data.split_ratios / "
            f"data.source_split_map. Report: {report_path}")
