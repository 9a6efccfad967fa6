"""Multi-object tracking over a detector's boxes (kit layer: numpy/scipy, imports only core).

``make_tracker(TrackerConfig(tracker="bytetrack"))`` gives SORT, ByteTrack or DeepSORT; each
``update(boxes_xyxy, scores, classes, image=..., embeddings=...)`` returns the confirmed tracks
of a frame. ``visionpipe.tracking.mot`` reads MOT Challenge sequences and scores results with
motmetrics; ``visionpipe.tracking.appearance`` gives DeepSORT its embeddings.
"""
import importlib

from visionpipe.tracking.config import TRACKER_FILE, TRACKERS, TrackerConfig

#: imported on first use, so reading the config (`visionpipe --help`) does not load scipy
_LAZY = {name: "visionpipe.tracking.trackers" for name in (
    "ByteTracker", "DeepSortTracker", "SortTracker", "TrackedObject", "Tracker", "make_tracker")}


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    if name in ("mot", "appearance", "kalman", "matching", "trackers"):
        return importlib.import_module(f"visionpipe.tracking.{name}")
    raise AttributeError(f"module 'visionpipe.tracking' has no attribute {name!r}")

__all__ = ["TRACKER_FILE", "TRACKERS", "TrackerConfig", "ByteTracker", "DeepSortTracker",
           "SortTracker", "TrackedObject", "Tracker", "make_tracker"]
