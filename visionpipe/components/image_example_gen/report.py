"""The quarantine report (quarantine.json) and the bad-fraction gate.

quarantine.json holds every quarantined item as ``{file, kind, reason}``, counts by reason
kind, exact duplicates (``{file, duplicate_of, sha256}``), and the ingest's counts, so one
file explains where every input went: kept (per split), quarantined, or a duplicate. It
also counts the images of every class per split (``images_by_class``, with a few of each
class's files) for the per-class minimum, and lists ``warnings`` that do not stop the run.
With semantic masks it holds each split's pixels per class (``mask_pixels_by_class``),
its pixels of the ignore value (``ignored_pixels``) and each class's share of the labelled
(not ignored) pixels (``pixel_share_by_class``).
"""
from __future__ import annotations

import json
import posixpath
from collections import Counter
from typing import Dict, List, Optional

REPORT_FILENAME = "quarantine.json"
SHOWN_IN_ERROR = 5


class IngestError(RuntimeError):
    """The ingest ran but its output must not be used; the message says why."""


class QuarantineLimitExceeded(IngestError):
    """More inputs were quarantined than data.max_bad_fraction allows."""


class EmptySplitError(IngestError):
    """A split the pipeline needs received no images."""


class SparseClassError(IngestError):
    """A class has fewer training images than data.min_examples_per_class."""


TRAIN_SPLIT = "train"


def class_counts(class_names: List[str], class_tally: Dict[str, dict],
                 split_names: List[str]) -> Dict[str, Dict[str, int]]:
    """Images per class per split (an image counts once for each class it shows), every
    known class included, those without any image too."""
    return {name: {split: int((class_tally.get(name) or {}).get("images_by_split", {}).get(split, 0))
                   for split in split_names}
            for name in class_names}


def sparse_classes(report: dict, min_examples: int) -> List[str]:
    """The classes with fewer than ``min_examples`` training images, in class order."""
    return [name for name, counts in report.get("images_by_class", {}).items()
            if counts.get(TRAIN_SPLIT, 0) < min_examples]


def _class_line(report: dict, name: str) -> str:
    counts = report["images_by_class"][name]
    where = ", ".join(f"{n} in {split}" for split, n in counts.items() if n) or "no image in any split"
    files = report.get("class_files", {}).get(name, [])
    shown = f": {', '.join(files)}" if files else ""
    more = " ..." if sum(counts.values()) > len(files) else ""
    return f"  {name!r}: {counts.get(TRAIN_SPLIT, 0)} training image(s) ({where}){shown}{more}"


def build_report(total: int, quarantined: List[dict], duplicates: List[dict],
                 images_by_split: Dict[str, int], objects_by_split: Dict[str, int],
                 class_names: List[str], split_plan: Dict[str, object],
                 class_tally: Optional[Dict[str, dict]] = None,
                 min_examples_per_class: int = 0,
                 mask_pixels: Optional[Dict[str, List[int]]] = None) -> dict:
    quarantined = sorted(quarantined, key=lambda q: (q["file"], q["reason"]))
    duplicates = sorted(duplicates, key=lambda d: d["file"])
    tally = class_tally or {}
    by_class = class_counts(list(class_names), tally, list(images_by_split))
    warnings = []
    if min_examples_per_class == 0:
        unseen = [name for name, counts in by_class.items() if not counts.get(TRAIN_SPLIT)]
        if unseen:
            warnings.append(f"class(es) {unseen} have no training image but are kept "
                            "(data.min_examples_per_class=0): the model may predict them")
    return {
        **(pixel_statistics(list(class_names), mask_pixels) if mask_pixels else {}),
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
        "images_by_class": by_class,
        "class_files": {name: sorted(tally[name]["files"]) for name in class_names if name in tally},
        "min_examples_per_class": min_examples_per_class,
        "warnings": warnings,
    }


def pixel_statistics(class_names: List[str], mask_pixels: Dict[str, List[int]]) -> dict:
    """Per split, pixels per mask value (0..255) -> by class name (id order), the ignored
    pixels (values beyond the class ids: validation lets only the task's ignore value
    through) and each class's share of the labelled pixels."""
    by_class, ignored, shares = {}, {}, {}
    for split, counts in sorted(mask_pixels.items()):
        by_class[split] = {name: int(counts[i]) for i, name in enumerate(class_names)}
        ignored[split] = int(sum(counts[len(class_names):]))
        labelled = sum(by_class[split].values())
        shares[split] = {name: n / labelled if labelled else 0.0 for name, n in by_class[split].items()}
    return {"mask_pixels_by_class": by_class, "ignored_pixels": ignored, "pixel_share_by_class": shares}


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
                 required_splits: List[str], min_examples_per_class: int = 0) -> None:
    """Raise one readable error when too much was quarantined, a split is empty or a class
    has fewer than ``min_examples_per_class`` training images."""
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
    sparse = sparse_classes(report, min_examples_per_class)
    if sparse:
        lines = "\n".join(_class_line(report, name) for name in sparse)
        raise SparseClassError(
            f"{len(sparse)} class(es) have fewer than data.min_examples_per_class="
            f"{min_examples_per_class} training images; the model would still list them in "
            f"labels.txt and could predict a class it never learned:\n{lines}\n"
            "Add images, fix the labels (one mistyped label makes a class of one) or remove the "
            "class (its folder, its rows or its data.class_names entry); to train anyway, lower "
            f"data.min_examples_per_class (0: no minimum). Report: {report_path}")
