"""Multi-object tracking over a detector's boxes (kit layer: numpy/scipy, imports only core).

``make_tracker(TrackerConfig(tracker="bytetrack"))`` gives SORT, ByteTrack or DeepSORT; each
``update(boxes_xyxy, scores, classes, image=..., embeddings=...)`` returns the confirmed tracks
of a frame. ``visionpipe.tracking.mot`` reads MOT Challenge sequences and scores results with
motmetrics; ``visionpipe.tracking.appearance`` gives DeepSORT its embeddings.
"""
from visionpipe.tracking.config import TRACKER_FILE, TRACKERS, TrackerConfig
from visionpipe.tracking.trackers import (ByteTracker, DeepSortTracker, SortTracker, TrackedObject,
                                          Tracker, make_tracker)

__all__ = ["TRACKER_FILE", "TRACKERS", "TrackerConfig", "ByteTracker", "DeepSortTracker",
           "SortTracker", "TrackedObject", "Tracker", "make_tracker"]
