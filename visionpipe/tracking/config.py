"""``TrackerConfig``: every tracker parameter, checked by ``validate()`` (errors name the dotted
key ``tracking.<field>``) and written beside a detector as ``visionpipe_tracker.json``."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Mapping, Union

from visionpipe.core.config import require
from visionpipe.core.errors import ConfigError

#: the file a pushed detector's ``assets.extra/`` holds the tracker config in
TRACKER_FILE = "visionpipe_tracker.json"
TRACKERS = ("sort", "bytetrack", "deepsort")
SECTION = "tracking"


@dataclass
class TrackerConfig:
    tracker: str = "bytetrack"
    #: birth: a track is reported once it has been matched in this many consecutive frames
    #: (tracks born in a sequence's first frame are reported at once)
    min_hits: int = 3
    #: death: a track unmatched for more than this many frames is deleted
    max_age: int = 30
    #: SORT / DeepSORT / ByteTrack's first stage: least IoU of a match
    iou_threshold: float = 0.2
    #: detections with at least this score are "high" (SORT and DeepSORT use only these)
    high_score: float = 0.5
    #: ByteTrack: detections in [low_score, high_score) join the second association stage
    low_score: float = 0.1
    #: ByteTrack: least IoU of a second-stage (low-score) match
    low_iou_threshold: float = 0.5
    #: ByteTrack: least score of an unmatched high detection that starts a new track
    new_track_score: float = 0.6
    #: DeepSORT: largest cosine distance of an appearance match
    max_cosine_distance: float = 0.2
    #: DeepSORT: recent embeddings kept per track (the gallery)
    gallery_size: int = 50
    #: DeepSORT: a matched detection scoring below this does not join the track's gallery
    #: (detectors score half-hidden objects low, and their crops show the occluder, which
    #: would later match the occluder's detection; cf. Deep OC-SORT's confidence-weighted
    #: appearance updates). 0: every match joins
    gallery_min_score: float = 0.6
    #: DeepSORT: weight of the Mahalanobis distance in the appearance cost (0: appearance only,
    #: the DeepSORT paper's choice; the gate applies either way)
    motion_weight: float = 0.0
    #: DeepSORT: squared Mahalanobis gate (chi-square 0.95 quantile for 4 dof)
    mahalanobis_gate: float = 9.4877
    #: match only detections of the track's class
    class_aware: bool = True
    #: Kalman filter noise, relative to the box height
    std_position: float = 1.0 / 20
    std_velocity: float = 1.0 / 160

    def validate(self) -> "TrackerConfig":
        k = SECTION + "."
        require(self.tracker in TRACKERS, k + "tracker",
                f"must be one of {', '.join(TRACKERS)}, got {self.tracker!r}")
        for name in ("min_hits", "max_age", "gallery_size"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    k + name, f"must be an integer >= 1, got {value!r}")
        for name in ("iou_threshold", "high_score", "low_score", "low_iou_threshold",
                     "new_track_score", "max_cosine_distance", "motion_weight",
                     "gallery_min_score"):
            value = getattr(self, name)
            require(_is_number(value) and 0.0 <= value <= 1.0, k + name,
                    f"must be a number in [0, 1], got {value!r}")
        require(self.low_score <= self.high_score, k + "low_score",
                f"must be <= tracking.high_score ({self.high_score}), got {self.low_score}")
        require(self.new_track_score >= self.high_score, k + "new_track_score",
                f"must be >= tracking.high_score ({self.high_score}), got {self.new_track_score}")
        for name in ("mahalanobis_gate", "std_position", "std_velocity"):
            value = getattr(self, name)
            require(_is_number(value) and value > 0, k + name,
                    f"must be a number > 0, got {value!r}")
        require(isinstance(self.class_aware, bool), k + "class_aware",
                f"must be true or false, got {self.class_aware!r}")
        return self

    def to_dict(self) -> Dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, values: Mapping[str, Any], where: str = SECTION) -> "TrackerConfig":
        if not isinstance(values, Mapping):
            raise ConfigError(f"{where}: must be a mapping of tracker keys, got "
                              f"{type(values).__name__}")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - known)
        if unknown:
            raise ConfigError(f"{SECTION}.{unknown[0]}: unknown tracker key (in {where}; "
                              f"valid: {', '.join(sorted(known))})")
        config = cls(**dict(values))
        return config.validate()

    def write(self, path: Union[str, Path]) -> Path:
        path = Path(path)
        path.write_text(json.dumps(self.validate().to_dict(), indent=2, sort_keys=True) + "\n")
        return path

    @classmethod
    def read(cls, path: Union[str, Path]) -> "TrackerConfig":
        path = Path(path)
        try:
            values = json.loads(path.read_text())
        except json.JSONDecodeError as err:
            raise ConfigError(f"{path}: not valid JSON ({err})") from None
        return cls.from_dict(values, where=str(path))


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
