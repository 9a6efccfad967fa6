"""MOT Challenge data: read a sequence folder, write results, score with motmetrics.

A sequence folder holds its frames in ``img1/`` (MOT Challenge) or ``img/``, ground truth in
``gt/gt.txt`` and public detections in ``det/det.txt`` or ``det.txt``. Every text file has one
box per line, ``frame,id,x,y,w,h,conf,...`` (pixels, ``x, y`` the top-left corner, frames from
1; detections have id -1). Ground-truth lines whose ``conf`` is 0 are MOT's "ignore" marks:
they are not scored, and the sequence counts them (``ignored_gt``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
#: the metrics reported per sequence and overall (motmetrics names, MOTP as mean IoU)
METRICS = ("mota", "motp", "idf1", "num_switches", "num_fragmentations", "mostly_tracked",
           "mostly_lost", "num_false_positives", "num_misses", "num_objects",
           "num_unique_objects", "precision", "recall")


@dataclass
class MotSequence:
    name: str
    root: Path
    frames: Dict[int, Path]  # frame number -> image file
    gt: Optional[np.ndarray] = None  # (N, 7+) rows, ignore marks removed
    det: Optional[np.ndarray] = None
    ignored_gt: int = 0
    notes: List[str] = field(default_factory=list)

    @property
    def frame_numbers(self) -> List[int]:
        if self.frames:
            return sorted(self.frames)
        rows = [a for a in (self.gt, self.det) if a is not None and len(a)]
        if not rows:
            return []
        return list(range(1, int(max(r[:, 0].max() for r in rows)) + 1))


def read_mot_file(path: Union[str, Path]) -> np.ndarray:
    """Rows of a MOT text file as float64 (N, >= 7): frame, id, x, y, w, h, conf, ...; a bad
    line is a ValueError naming the file and line."""
    path = Path(path)
    rows = []
    width = None
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        text = line.strip()
        if not text:
            continue
        try:
            values = [float(v) for v in re.split(r"[,\s]+", text)]
        except ValueError:
            raise ValueError(f"{path}:{number}: not a comma-separated row of numbers: "
                             f"{text[:80]!r}") from None
        if len(values) < 6:
            raise ValueError(f"{path}:{number}: a MOT row needs at least 6 values "
                             f"(frame,id,x,y,w,h), got {len(values)}")
        if len(values) < 7:
            values.append(1.0)  # no confidence column: every box counts
        if width is None:
            width = len(values)
        values = (values + [-1.0] * width)[:width]
        frame, _, _, _, w, h = values[:6]
        if frame < 1 or frame != int(frame):
            raise ValueError(f"{path}:{number}: frame must be an integer >= 1, got {frame}")
        if w < 0 or h < 0 or not np.all(np.isfinite(values[:7])):
            raise ValueError(f"{path}:{number}: box width/height must be finite and >= 0")
        rows.append(values)
    return np.array(rows, dtype=np.float64).reshape(-1, width or 7)


def frame_files(root: Union[str, Path], subfolders: Sequence[str] = ("img1", "img")) -> Dict[int, Path]:
    """Frame number -> image file of the first of ``subfolders`` of ``root`` that exists (``()``:
    ``root`` itself); numbers from the files' trailing digits, else their sorted order from 1."""
    root = Path(root)
    for folder in [root / name for name in subfolders] or [root]:
        if folder.is_dir():
            files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            numbers = [re.search(r"(\d+)$", p.stem) for p in files]
            if files and all(numbers):
                by_number = {int(m.group(1)): p for m, p in zip(numbers, files)}
                if len(by_number) != len(files):
                    raise ValueError(f"{folder}: two frame files share a frame number")
                return by_number
            return {i + 1: p for i, p in enumerate(files)}
    return {}


def read_mot_sequence(root: Union[str, Path]) -> MotSequence:
    """A MOT Challenge sequence folder (frames, ground truth and detections, each optional but
    not all absent)."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: no such sequence folder")
    frames = frame_files(root)
    sequence = MotSequence(name=root.name, root=root, frames=frames)
    gt_path = root / "gt" / "gt.txt"
    if gt_path.is_file():
        gt = read_mot_file(gt_path)
        keep = gt[:, 6] != 0
        sequence.ignored_gt = int((~keep).sum())
        sequence.gt = gt[keep]
    for det_path in (root / "det" / "det.txt", root / "det.txt"):
        if det_path.is_file():
            sequence.det = read_mot_file(det_path)
            break
    if not frames and sequence.gt is None and sequence.det is None:
        raise ValueError(f"{root}: not a MOT sequence (no img1/ or img/ frames, gt/gt.txt, "
                         f"det/det.txt or det.txt)")
    return sequence


def rows_of_frame(rows: Optional[np.ndarray], frame: int) -> np.ndarray:
    if rows is None or not len(rows):
        return np.zeros((0, 7))
    return rows[rows[:, 0] == frame]


def xywh_to_xyxy(xywh: np.ndarray) -> np.ndarray:
    xywh = np.asarray(xywh, dtype=np.float64).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:4]], axis=1)


def tracks_to_rows(frame: int, tracked: Iterable) -> List[List[float]]:
    """MOT result rows ``frame,id,x,y,w,h,score,-1,-1,-1`` of one frame's tracked objects."""
    rows = []
    for obj in tracked:
        x1, y1, x2, y2 = [float(v) for v in obj.box]
        rows.append([frame, obj.track_id, x1, y1, x2 - x1, y2 - y1, obj.score, -1, -1, -1])
    return rows


def write_mot_results(path: Union[str, Path], rows: Sequence[Sequence[float]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as f:
        for r in rows:
            f.write(f"{int(r[0])},{int(r[1])},{r[2]:.2f},{r[3]:.2f},{r[4]:.2f},{r[5]:.2f},"
                    f"{r[6]:.4f},-1,-1,-1\n")
    return path


def track_detections(tracker, det: np.ndarray, frames: Sequence[int],
                     image_of: Optional[Callable[[int], np.ndarray]] = None) -> np.ndarray:
    """Run ``tracker`` (reset first) over MOT detection rows frame by frame; MOT result rows.
    ``image_of(frame)`` gives the frame's pixels to a tracker that embeds appearance."""
    tracker.reset()
    rows: List[List[float]] = []
    for frame in frames:
        d = rows_of_frame(det, frame)
        image = image_of(frame) if image_of is not None else None
        tracked = tracker.update(xywh_to_xyxy(d[:, 2:6]), d[:, 6], None, image=image)
        rows += tracks_to_rows(frame, tracked)
    return np.array(rows, dtype=np.float64).reshape(-1, 10)


def accumulate(gt: np.ndarray, hyp: np.ndarray, frames: Optional[Sequence[int]] = None,
               iou: float = 0.5):
    """A motmetrics accumulator of one sequence: a match needs IoU >= ``iou``."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=False)
    if frames is None:
        frames = sorted(set(gt[:, 0].astype(int)) | set(hyp[:, 0].astype(int)))
    for frame in frames:
        g = rows_of_frame(gt, frame)
        h = rows_of_frame(hyp, frame)
        distances = mm.distances.iou_matrix(g[:, 2:6], h[:, 2:6], max_iou=1.0 - iou)
        acc.update(g[:, 1].astype(int).tolist(), h[:, 1].astype(int).tolist(), distances,
                   frameid=int(frame))
    return acc


def mot_metrics(sequences: Mapping[str, Tuple[np.ndarray, np.ndarray]],
                iou: float = 0.5) -> Dict[str, Dict[str, float]]:
    """MOTA, MOTP (mean IoU of the matches, MOT Challenge's convention), IDF1, ID switches,
    fragmentations, mostly tracked/lost, ... per sequence and ``overall``, from
    ``{name: (gt rows, result rows)}``."""
    import motmetrics as mm

    names = list(sequences)
    accs = [accumulate(np.asarray(gt, dtype=np.float64).reshape(-1, np.shape(gt)[-1]),
                       np.asarray(hyp, dtype=np.float64).reshape(-1, 10), iou=iou)
            for gt, hyp in sequences.values()]
    summary = mm.metrics.create().compute_many(accs, names=names, metrics=list(METRICS),
                                               generate_overall=len(names) > 1)
    out = {}
    for name, row in summary.iterrows():
        values = {k: float(row[k]) for k in METRICS}
        values["motp"] = 1.0 - values["motp"] if np.isfinite(values["motp"]) else 0.0
        out["overall" if name == "OVERALL" else str(name)] = values
    if len(names) == 1:
        out["overall"] = dict(out[names[0]])
    return out
