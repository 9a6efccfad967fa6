"""SORT, ByteTrack and DeepSORT over a detector's boxes, one frame at a time.

Every tracker takes, per frame, ``xyxy`` pixel boxes, their scores and (optionally) class ids
and returns the confirmed tracks seen in that frame. The life of a track is the same for all
three: it is born tentative from an unmatched detection, reported once it has been matched in
``min_hits`` consecutive frames (at once in a sequence's first frame), deleted while tentative
at its first miss, and deleted once unmatched for more than ``max_age`` frames; until then its
Kalman filter keeps predicting it, so a confirmed track can be found again after an occlusion
and keeps its id. The trackers differ in how they associate:

- **SORT**: one Hungarian assignment of the high-score detections on IoU with the predictions.
- **ByteTrack**: high-score detections first (all tracks, lost ones included), then the
  low-score detections with the tracks still unmatched that were seen in the previous frame
  (recovering occluded, low-confidence objects instead of discarding them), then tentative
  tracks; only detections of at least ``new_track_score`` start tracks.
- **DeepSORT**: appearance first, in a matching cascade that favours recently seen tracks: the
  smallest cosine distance between a detection's embedding and the track's gallery of recent
  embeddings, gated on motion (within the Mahalanobis gate of the Kalman prediction, or
  overlapping it by ``iou_threshold``; optionally blended into the cost by ``motion_weight``),
  then IoU, as SORT, for the tracks left (DeepSORT's paper limits this stage to tentative and
  just-missed tracks; here lost tracks join it). A track lost behind an occluder is
  re-identified by its appearance when it reappears away from where IoU would find it.
  Only matches scoring at least ``gallery_min_score`` join a gallery: a half-hidden
  object's crop shows its occluder, and would later match the occluder's detection.
"""
from __future__ import annotations

import collections
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np

from visionpipe.tracking.config import TrackerConfig
from visionpipe.tracking.kalman import KalmanBoxFilter, xyah_to_xyxy, xyxy_to_xyah
from visionpipe.tracking.matching import assign, iou_matrix, normalise

TENTATIVE, CONFIRMED, DELETED = "tentative", "confirmed", "deleted"
#: the cost of a pair a gate excludes (above every admissible cost)
_INFEASIBLE = 1e5

#: (image HxWx3, boxes (N, 4) xyxy) -> embeddings (N, D)
Embedder = Callable[[np.ndarray, np.ndarray], np.ndarray]


@dataclass
class TrackedObject:
    track_id: int
    box: np.ndarray  # xyxy pixels
    score: float
    class_id: int


class Track:
    def __init__(self, kf: KalmanBoxFilter, box: np.ndarray, score: float, class_id: int,
                 embedding: Optional[np.ndarray], gallery_size: int):
        self.mean, self.covariance = kf.initiate(xyxy_to_xyah(box))
        self.score = float(score)
        self.class_id = int(class_id)
        self.hits = 1
        self.time_since_update = 0
        self.state = TENTATIVE
        self.track_id = 0  # given when confirmed, so reported ids are 1, 2, 3, ...
        self.gallery = collections.deque(maxlen=gallery_size)
        self._gallery_matrix: Optional[np.ndarray] = None
        self._add_embedding(embedding)

    def _add_embedding(self, embedding: Optional[np.ndarray]) -> None:
        if embedding is not None:
            self.gallery.append(np.asarray(embedding, dtype=np.float64))
            self._gallery_matrix = None

    def gallery_matrix(self) -> np.ndarray:
        """The gallery as L2-normalised rows (G, D), kept until the gallery changes."""
        if self._gallery_matrix is None:
            self._gallery_matrix = normalise(np.array(self.gallery))
        return self._gallery_matrix

    @property
    def box(self) -> np.ndarray:
        return xyah_to_xyxy(self.mean[:4])

    def predict(self, kf: KalmanBoxFilter) -> None:
        self.mean, self.covariance = kf.predict(self.mean, self.covariance)
        self.time_since_update += 1

    def update(self, kf: KalmanBoxFilter, box: np.ndarray, score: float, class_id: int,
               embedding: Optional[np.ndarray]) -> None:
        self.record(*kf.update(self.mean, self.covariance, xyxy_to_xyah(box)), score,
                    class_id, embedding)

    def record(self, mean: np.ndarray, covariance: np.ndarray, score: float, class_id: int,
               embedding: Optional[np.ndarray]) -> None:
        """A match whose filter update is done (``mean``, ``covariance``: the new state)."""
        self.mean, self.covariance = mean, covariance
        self.score = float(score)
        self.class_id = int(class_id)
        self.hits += 1
        self.time_since_update = 0
        self._add_embedding(embedding)


class Tracker:
    """The shared life of tracks; subclasses implement :meth:`_associate`."""

    name = ""
    needs_embeddings = False

    def __init__(self, config: Optional[TrackerConfig] = None,
                 embedder: Optional[Embedder] = None):
        self.config = (config or TrackerConfig(tracker=self.name)).validate()
        self.embedder = embedder
        self.kf = KalmanBoxFilter(self.config.std_position, self.config.std_velocity)
        self.reset()

    def reset(self) -> None:
        """Forget every track (a new sequence); ids start again at 1."""
        self.tracks: List[Track] = []
        self.frame_count = 0
        self._next_id = 1

    def update(self, boxes, scores=None, classes=None, image: Optional[np.ndarray] = None,
               embeddings=None) -> List[TrackedObject]:
        """Advance one frame with its detections; returns the confirmed tracks matched in it."""
        boxes, scores, classes = _check_detections(boxes, scores, classes)
        embeddings = self._embeddings(boxes, image, embeddings)
        self.frame_count += 1
        for track in self.tracks:
            track.predict(self.kf)
        matches, births = self._associate(boxes, scores, classes, embeddings)
        # every matched track's filter update in one stacked solve
        means, covariances = self.kf.update_many(
            np.array([t.mean for t, _ in matches]).reshape(-1, 8),
            np.array([t.covariance for t, _ in matches]).reshape(-1, 8, 8),
            xyxy_to_xyah(boxes[[d for _, d in matches]]).reshape(-1, 4))
        for (track, det), mean, covariance in zip(matches, means, covariances):
            keep = embeddings is not None and scores[det] >= self.config.gallery_min_score
            track.record(mean, covariance, scores[det], classes[det],
                         embeddings[det] if keep else None)
            if track.state == TENTATIVE and track.hits >= self.config.min_hits:
                self._confirm(track)
        for track in self.tracks:
            if track.time_since_update > 0 and (track.state == TENTATIVE or
                                                track.time_since_update > self.config.max_age):
                track.state = DELETED
        self.tracks = [t for t in self.tracks if t.state != DELETED]
        for det in births:
            track = Track(self.kf, boxes[det], scores[det], classes[det],
                          None if embeddings is None else embeddings[det],
                          self.config.gallery_size)
            if self.frame_count == 1 or self.config.min_hits <= 1:
                self._confirm(track)
            self.tracks.append(track)
        return [TrackedObject(t.track_id, t.box, t.score, t.class_id) for t in self.tracks
                if t.state == CONFIRMED and t.time_since_update == 0]

    def _confirm(self, track: Track) -> None:
        track.state = CONFIRMED
        track.track_id = self._next_id
        self._next_id += 1

    def _embeddings(self, boxes, image, embeddings):
        if embeddings is not None:
            embeddings = np.asarray(embeddings, dtype=np.float64)
            if embeddings.ndim != 2 or len(embeddings) != len(boxes):
                raise ValueError(f"embeddings must be (N, D) for N = {len(boxes)} boxes, got "
                                 f"shape {embeddings.shape}")
            return embeddings
        if not self.needs_embeddings:
            return None
        if self.embedder is None:
            raise ValueError(f"{self.name} needs an appearance embedding per detection: pass "
                             f"embeddings= or build the tracker with an embedder")
        if image is None:
            raise ValueError(f"{self.name}'s embedder needs the frame: pass image=")
        if not len(boxes):
            return np.zeros((0, 1))
        return self._embeddings(boxes, None, self.embedder(image, boxes))

    def _associate(self, boxes, scores, classes, embeddings):
        """(matched (track, detection index) pairs, detection indices that start tracks)."""
        raise NotImplementedError

    # -- shared association steps
    def _iou_cost(self, tracks: Sequence[Track], dets: Sequence[int], boxes, classes):
        cost = 1.0 - iou_matrix(np.array([t.box for t in tracks]).reshape(-1, 4),
                                boxes[list(dets)].reshape(-1, 4))
        return self._class_gate(cost, tracks, dets, classes)

    def _class_gate(self, cost, tracks, dets, classes):
        if self.config.class_aware and cost.size:
            track_classes = np.array([t.class_id for t in tracks])
            cost = np.where(track_classes[:, None] != classes[list(dets)][None, :],
                            _INFEASIBLE, cost)
        return cost

    def _match_iou(self, tracks, dets, boxes, classes, min_iou):
        """IoU matching of ``tracks`` with ``dets``: (pairs, unmatched tracks, unmatched dets)."""
        cost = self._iou_cost(tracks, dets, boxes, classes)
        pairs, free_tracks, free_dets = assign(cost, 1.0 - min_iou)
        return ([(tracks[i], dets[j]) for i, j in pairs], [tracks[i] for i in free_tracks],
                [dets[j] for j in free_dets])


class SortTracker(Tracker):
    name = "sort"

    def _associate(self, boxes, scores, classes, embeddings):
        high = [i for i in range(len(boxes)) if scores[i] >= self.config.high_score]
        matches, _, free = self._match_iou(self.tracks, high, boxes, classes,
                                           self.config.iou_threshold)
        return matches, free


class ByteTracker(Tracker):
    name = "bytetrack"

    def _associate(self, boxes, scores, classes, embeddings):
        c = self.config
        high = [i for i in range(len(boxes)) if scores[i] >= c.high_score]
        low = [i for i in range(len(boxes)) if c.low_score <= scores[i] < c.high_score]
        confirmed = [t for t in self.tracks if t.state == CONFIRMED]
        tentative = [t for t in self.tracks if t.state == TENTATIVE]
        first, left, high_left = self._match_iou(confirmed, high, boxes, classes,
                                                 c.iou_threshold)
        # the low-score boxes only continue tracks seen in the previous frame
        recent = [t for t in left if t.time_since_update == 1]
        second, _, _ = self._match_iou(recent, low, boxes, classes, c.low_iou_threshold)
        third, _, high_left = self._match_iou(tentative, high_left, boxes, classes,
                                              c.iou_threshold)
        births = [i for i in high_left if scores[i] >= c.new_track_score]
        return first + second + third, births


class DeepSortTracker(Tracker):
    name = "deepsort"
    needs_embeddings = True

    def _associate(self, boxes, scores, classes, embeddings):
        c = self.config
        dets = [i for i in range(len(boxes)) if scores[i] >= c.high_score]
        confirmed = [t for t in self.tracks if t.state == CONFIRMED]
        matches = []
        # matching cascade: tracks seen most recently choose first
        for age in sorted({t.time_since_update for t in confirmed}):
            if not dets:
                break
            level = [t for t in confirmed if t.time_since_update == age]
            cost = self._appearance_cost(level, dets, boxes, classes, embeddings)
            pairs, _, free = assign(cost, 1.0)
            matches += [(level[i], dets[j]) for i, j in pairs]
            dets = [dets[j] for j in free]
        # then IoU, as SORT, for every track left (tentative ones and lost ones as well: a
        # lost track whose appearance changed, half hidden, is still found where it should be)
        matched = {id(t) for t, _ in matches}
        candidates = [t for t in self.tracks if id(t) not in matched]
        second, _, dets = self._match_iou(candidates, dets, boxes, classes, c.iou_threshold)
        return matches + second, dets

    def _appearance_cost(self, tracks, dets, boxes, classes, embeddings):
        c = self.config
        measurements = xyxy_to_xyah(boxes[dets])
        ious = iou_matrix(np.array([t.box for t in tracks]), boxes[dets])
        motions = self.kf.gating_distances(np.array([t.mean for t in tracks]),
                                           np.array([t.covariance for t in tracks]),
                                           measurements)
        # smallest cosine distance to each track's gallery (no gallery: 1, gated out)
        queries = normalise(embeddings[dets])
        appearance = np.ones((len(tracks), len(dets)))
        for row, track in enumerate(tracks):
            if track.gallery:
                appearance[row] = 1.0 - np.max(track.gallery_matrix() @ queries.T, axis=0)
        blended = (c.motion_weight * np.minimum(motions / c.mahalanobis_gate, 1.0)
                   + (1 - c.motion_weight) * appearance)
        # motion gate: within the Mahalanobis gate or overlapping the prediction (a small,
        # fast object's prediction can be a few pixels off yet overlap well)
        implausible = (motions > c.mahalanobis_gate) & (ious < c.iou_threshold)
        gated = implausible | (appearance > c.max_cosine_distance)
        cost = np.where(gated, _INFEASIBLE, blended)
        return self._class_gate(cost, tracks, dets, classes)


TRACKER_CLASSES = {cls.name: cls for cls in (SortTracker, ByteTracker, DeepSortTracker)}


def make_tracker(config: TrackerConfig, embedder: Optional[Embedder] = None) -> Tracker:
    """The tracker ``config.tracker`` names, with ``config``'s parameters."""
    config.validate()
    return TRACKER_CLASSES[config.tracker](config, embedder=embedder)


def _check_detections(boxes, scores, classes):
    boxes = np.asarray(boxes, dtype=np.float64)
    if boxes.size == 0:
        boxes = boxes.reshape(0, 4)
    if boxes.ndim != 2 or boxes.shape[1] != 4:
        raise ValueError(f"boxes must be (N, 4) xyxy, got shape {boxes.shape}")
    if not np.all(np.isfinite(boxes)):
        raise ValueError("boxes must be finite")
    if np.any(boxes[:, 2] < boxes[:, 0]) or np.any(boxes[:, 3] < boxes[:, 1]):
        raise ValueError("boxes must be xyxy with xmax >= xmin and ymax >= ymin")
    n = len(boxes)
    scores = np.ones(n) if scores is None else np.asarray(scores, dtype=np.float64).reshape(-1)
    classes = (np.zeros(n, dtype=np.int64) if classes is None
               else np.asarray(classes).astype(np.int64).reshape(-1))
    if len(scores) != n or len(classes) != n:
        raise ValueError(f"{n} boxes but {len(scores)} scores and {len(classes)} classes")
    return boxes, scores, classes
