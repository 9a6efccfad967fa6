"""Which split an image goes to.

Ratio splits hash the image's sha256, so an image's split depends only on its bytes: the
same image lands in the same split on every run and on every worker, and two copies of
one image can never straddle splits (they are also de-duplicated before this).

With ``data.split_by: group`` the hash is the sha256 of the image's group id
(``image/group_id``: a video, patient or sequence), so every image of a group lands in the
group's split: frames of one video, or scans of one patient, never straddle train and eval.
"""
from __future__ import annotations

import hashlib
from typing import Dict, List, Optional, Sequence, Tuple

from visionpipe.core.config import ConfigError, DataConfig

REQUIRED_SPLITS = ("train", "eval")


def hash_fraction(sha256_hex: str) -> float:
    """A uniform number in [0, 1) from the first 64 bits of a sha256 hex digest."""
    return int(sha256_hex[:16], 16) / float(1 << 64)


def group_hash(group_id: str) -> str:
    """The sha256 hex digest a group's split is drawn from."""
    return hashlib.sha256(group_id.encode("utf-8")).hexdigest()


def split_by_ratio(sha256_hex: str, ratios: Sequence[Tuple[str, float]]) -> str:
    fraction, cumulative = hash_fraction(sha256_hex), 0.0
    for name, ratio in ratios:
        cumulative += ratio
        if fraction < cumulative:
            return name
    return ratios[-1][0]  # rounding: the ratios sum to 1 within 1e-6


class SplitPlan:
    """The output split names and how an image's split is chosen."""

    def __init__(self, data: DataConfig, source_splits: Optional[List[str]]):
        self.use_source_splits = data.use_source_splits
        self.by_group = data.split_by == "group"
        self.ratios = list(data.split_ratios.items())
        self.rename = dict(data.source_split_map)
        if self.use_source_splits:
            if not source_splits:
                raise ConfigError(f"data.use_source_splits: the {data.source!r} source at "
                                  f"{data.path or data.tfds_name} has no splits of its own; "
                                  "set it to false to split by data.split_ratios")
            unknown = sorted(set(self.rename) - set(source_splits))
            if unknown:
                raise ConfigError(f"data.source_split_map: {unknown} are not splits of the source "
                                  f"(it has {source_splits})")
            self.names = list(dict.fromkeys(self.rename.get(s, s) for s in source_splits))
            missing = [s for s in REQUIRED_SPLITS if s not in self.names]
            if missing:
                raise ConfigError(f"data.source_split_map: the source's splits {source_splits} become "
                                  f"{self.names}, which lack {missing}; map them, e.g. "
                                  "data.source_split_map={val: eval}")
        else:
            self.names = [name for name, _ in self.ratios]
            if "eval" not in self.names:
                raise ConfigError(f"data.split_ratios: needs an 'eval' split, got {self.names}")

    def split_of(self, sha256_hex: str, source_split: Optional[str],
                 group_id: Optional[str] = None) -> str:
        if self.use_source_splits:
            return self.rename.get(source_split, source_split)
        if self.by_group:
            if group_id is None:
                raise ValueError("data.split_by is 'group' but the image has no group id")
            return split_by_ratio(group_hash(group_id), self.ratios)
        return split_by_ratio(sha256_hex, self.ratios)

    def describe(self) -> Dict[str, object]:
        if self.use_source_splits:
            return {"mode": "source", "rename": self.rename, "splits": self.names}
        if self.by_group:
            return {"mode": "group", "ratios": dict(self.ratios), "splits": self.names}
        return {"mode": "sha256", "ratios": dict(self.ratios), "splits": self.names}
