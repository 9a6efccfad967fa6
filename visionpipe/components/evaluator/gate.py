"""The one gate: absolute thresholds, change vs the latest blessed model, and the trivial floor.

One rule for missing and NaN values: a gated metric the candidate lacks, or whose value is
NaN, fails the gate; a change check whose baseline value is missing or NaN is skipped and said.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Dict, List, Mapping, Optional


@dataclasses.dataclass
class GateResult:
    blessed: bool
    failures: List[str]
    notes: List[str]
    rows: List[Dict]  # one per gated metric: model, trivial, baseline, threshold, max drop


def _usable(value) -> bool:
    return isinstance(value, (int, float)) and not math.isnan(value)


def judge(candidate: Mapping[str, float], *, gate_metric: str, thresholds: Mapping[str, float],
          max_drops: Mapping[str, float], trivial: Optional[Mapping[str, float]] = None,
          min_margin_over_trivial: float = 0.0,
          baseline: Optional[Mapping[str, float]] = None) -> GateResult:
    """Bless ``candidate`` when every gated metric is present and finite, ``thresholds`` are
    met, the gate metric beats the trivial predictor's by ``min_margin_over_trivial``, and no
    ``max_drops`` metric fell by more than allowed against ``baseline``. Higher is better."""
    failures: List[str] = []
    notes: List[str] = []
    names = [gate_metric] + [n for n in (*thresholds, *max_drops) if n != gate_metric]
    rows = []
    for name in dict.fromkeys(names):
        value = candidate.get(name)
        row = {"metric": name, "model": value,
               "trivial": (trivial or {}).get(name), "baseline": (baseline or {}).get(name),
               "threshold": thresholds.get(name), "max_drop": max_drops.get(name)}
        rows.append(row)
        if not _usable(value):
            failures.append(f"{name}: {'not computed' if value is None else 'NaN'} for the model "
                            f"(computed: {sorted(candidate)[:12]})")
            continue
        lower = thresholds.get(name)
        if lower is not None and value < lower:
            failures.append(f"{name}: {value:.4f} is below the threshold {lower}")
        if name == gate_metric and trivial is not None:
            floor = trivial.get(name)
            if _usable(floor):
                if value < floor + min_margin_over_trivial:
                    failures.append(
                        f"{name}: {value:.4f} does not beat the trivial predictor's {floor:.4f} "
                        f"by evaluate.min_margin_over_trivial={min_margin_over_trivial}")
            else:
                notes.append(f"{name}: the trivial predictor's value is unknown; floor not applied")
        drop = max_drops.get(name)
        if drop is not None and baseline is not None:
            before = baseline.get(name)
            if not _usable(before):
                notes.append(f"{name}: the latest blessed model has no value; change not checked")
            elif value < before - drop:
                failures.append(f"{name}: {value:.4f} dropped more than {drop} from the latest "
                                f"blessed model's {before:.4f}")
    return GateResult(blessed=not failures, failures=failures, notes=notes, rows=rows)


def format_table(rows: List[Dict]) -> List[str]:
    """The gate as text: metric | model | trivial | baseline | threshold | max drop."""
    def shown(value):
        return "-" if value is None else (f"{value:.4f}" if isinstance(value, float) else str(value))

    lines = [f"{'metric':<16} {'model':>8} {'trivial':>8} {'baseline':>9} {'threshold':>10} "
             f"{'max drop':>9}"]
    for row in rows:
        lines.append(f"{row['metric']:<16} {shown(row['model']):>8} {shown(row['trivial']):>8} "
                     f"{shown(row['baseline']):>9} {shown(row['threshold']):>10} "
                     f"{shown(row['max_drop']):>9}")
    return lines
