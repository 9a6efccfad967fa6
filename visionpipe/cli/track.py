"""`visionpipe track`: a detector + a tracker over a video file or a folder of frames.

The boxes come from a pushed detector (``--model``, its SavedModel), a served one
(``--server`` + ``--model_name``, REST or gRPC) or a MOT ``det.txt`` (``--detections``: the
tracker alone). Writes ``<output_dir>/<name>.mot.txt`` (MOT Challenge result rows),
``<output_dir>/<name>.tracks.mp4`` (boxes, track ids and trails drawn; OpenCV's VideoWriter;
not with ``--no_video`` or without frames) and, with ``--gt``, ``<name>.metrics.json``
(motmetrics MOTA, IDF1, ID switches, ...). The tracker's
parameters come from ``--tracker_config``, else from the version folder's
``assets.extra/visionpipe_tracker.json`` when present, else the defaults; ``--tracker``
overrides which tracker runs. Tracking runs here, client-side (the server stays stateless).
"""
from __future__ import annotations

import collections
import json
from pathlib import Path
from typing import Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import numpy as np

from visionpipe.core.errors import UserError
from visionpipe.tracking import mot  # numpy only; the trackers (scipy) load in run()
from visionpipe.tracking.config import TRACKER_FILE, TRACKERS, TrackerConfig

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
TRAIL_LENGTH = 30
PALETTE = [(230, 25, 75), (60, 180, 75), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 190), (0, 128, 128)]


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "track", help="track objects in a video or a folder of frames with a pushed detector "
                      "(or over a MOT det.txt): writes MOT-format results, an annotated video, "
                      "and MOTA/IDF1 against --gt")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a pushed detector's version directory (or any "
                                        "detection SavedModel)")
    source.add_argument("--server", help="host:port of a TF Serving-compatible server serving "
                                         "a detector (with --model_name)")
    source.add_argument("--detections", help="a MOT det.txt (frame,-1,x,y,w,h,score,...): "
                                             "track these boxes instead of running a detector")
    p.add_argument("--model_name", default="", help="with --server: the served model's name")
    p.add_argument("--protocol", choices=["rest", "grpc"], default="rest", help="with --server")
    p.add_argument("--tracker", default=None,
                   help=f"{', '.join(TRACKERS)}: overrides the tracker config's `tracker` "
                        f"(default: bytetrack)")
    p.add_argument("--tracker_config", default=None,
                   help=f"a {TRACKER_FILE} (default: the model's assets.extra/{TRACKER_FILE} "
                        f"when present)")
    p.add_argument("--embedder", default=None,
                   help="deepsort: an embedder SavedModel (its serving_tensor signature on box "
                        "crops); default: a colour histogram of each box")
    p.add_argument("--embedding_output", default="embedding",
                   help="with --embedder: the signature output holding the embedding")
    p.add_argument("--gt", default=None,
                   help="a MOT gt.txt: score the results with motmetrics (MOTA, IDF1, ID "
                        "switches, ...) and write <name>.metrics.json")
    p.add_argument("--output_dir", default="tracks")
    p.add_argument("--no_video", action="store_true", help="write no annotated video")
    p.add_argument("--fps", type=float, default=None,
                   help="frame rate of the written video (default: the input video's, or 25)")
    p.add_argument("--max_frames", type=int, default=0, help="stop after this many frames (0: all)")
    p.add_argument("input", nargs="?", default=None,
                   help="a video file or a folder of frames (a MOT sequence folder with img1/ "
                        "or img/ works too); optional with --detections (then no video, and no "
                        "deepsort, which needs the pixels)")
    p.set_defaults(handler=cmd_track)


def resolve_tracker_config(model_dir: Optional[str], tracker: Optional[str] = None,
                           config_path: Optional[str] = None) -> Tuple[TrackerConfig, str]:
    """(config, where it came from): ``config_path``, else the pushed model's
    ``assets.extra/visionpipe_tracker.json``, else the defaults; ``tracker`` overrides."""
    if tracker is not None and tracker not in TRACKERS:
        raise UserError(f"--tracker {tracker!r}: unknown tracker (valid: {', '.join(TRACKERS)})")
    pushed = Path(model_dir) / "assets.extra" / TRACKER_FILE if model_dir else None
    if config_path:
        if not Path(config_path).is_file():
            raise UserError(f"--tracker_config {config_path}: file not found")
        config, source = TrackerConfig.read(config_path), config_path
    elif pushed is not None and pushed.is_file():
        config, source = TrackerConfig.read(pushed), str(pushed)
    else:
        config, source = TrackerConfig(), "defaults"
    if tracker:
        config.tracker = tracker
        source += ", tracker from --tracker"
    return config.validate(), source


# --------------------------------------------------------------------------- input frames
def open_frames(path: str, max_frames: int = 0) -> Tuple[Iterator[Tuple[int, np.ndarray]], Optional[float], str]:
    """(iterator of (frame number from 1, RGB uint8 frame), the video's fps or None, name)."""
    source = Path(path)
    if source.is_dir():
        try:
            files = mot.frame_files(source) or mot.frame_files(source, subfolders=())
        except ValueError as err:  # two files with one frame number
            raise UserError(str(err)) from None
        if not files:
            raise UserError(f"{path}: no frames ({', '.join(mot.IMAGE_SUFFIXES)}) in the folder, "
                            f"img1/ or img/")
        numbers = sorted(files)[:max_frames or None]
        return (_read_image_frames(files, numbers), None, source.name)
    if not source.is_file():
        raise UserError(f"{path}: no such video file or frames folder")
    if source.suffix.lower() not in VIDEO_SUFFIXES:
        raise UserError(f"{path}: not a video ({', '.join(VIDEO_SUFFIXES)}) or a frames folder")
    import cv2

    capture = cv2.VideoCapture(str(source))
    if not capture.isOpened():
        raise UserError(f"{path}: OpenCV cannot open this video")
    fps = capture.get(cv2.CAP_PROP_FPS) or None
    return _read_video_frames(capture, max_frames, path), fps, source.stem


def _read_image_frames(files: Dict[int, Path], numbers: List[int]):
    from PIL import Image, UnidentifiedImageError

    for number in numbers:
        try:
            yield number, np.asarray(Image.open(files[number]).convert("RGB"))
        except (OSError, UnidentifiedImageError) as err:
            raise UserError(f"{files[number]}: not a readable image ({err})") from None


def _read_video_frames(capture, max_frames: int, path: str):
    import cv2

    number = 0
    try:
        while not max_frames or number < max_frames:
            ok, frame = capture.read()
            if not ok:
                break
            number += 1
            yield number, cv2.cvtColor(frame, cv2.COLOR_BGR2RGB)
    finally:
        capture.release()
    if number == 0:
        raise UserError(f"{path}: the video has no readable frame")


# --------------------------------------------------------------------------- detectors
#: the outputs of a detection export's serving_default (the detection task's contract)
DETECTION_OUTPUTS = ("detection_boxes", "detection_scores", "detection_classes", "num_detections")


def _png(frame: np.ndarray) -> bytes:
    import cv2

    ok, encoded = cv2.imencode(".png", cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
    if not ok:
        raise UserError("could not encode a frame for the detector")
    return encoded.tobytes()


def parse_detections(out: Dict[str, object], shape: Tuple[int, ...],
                     names_by_id: Dict[int, str]) -> Tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One image's detection outputs (normalised ``ymin, xmin, ymax, xmax`` boxes, padded to
    ``max_detections``) -> (xyxy pixel boxes, scores, class ids); collects the class names."""
    count = int(np.asarray(out["num_detections"]).reshape(-1)[0])
    boxes = np.asarray(out["detection_boxes"], dtype=np.float64).reshape(-1, 4)[:count]
    h, w = shape[:2]
    xyxy = np.stack([boxes[:, 1] * w, boxes[:, 0] * h, boxes[:, 3] * w, boxes[:, 2] * h], 1)
    classes = np.asarray(out["detection_classes"]).reshape(-1)[:count].astype(np.int64)
    scores = np.asarray(out["detection_scores"], dtype=np.float64).reshape(-1)[:count]
    if "detection_class_names" in out:
        names = np.asarray(out["detection_class_names"], dtype=object).reshape(-1)[:count]
        for c, n in zip(classes, names):
            names_by_id[int(c)] = n.decode() if isinstance(n, bytes) else str(n)
    return xyxy.reshape(-1, 4), scores, classes


class SavedModelDetector:
    """A detection export's ``serving_default`` on one RGB frame (PNG-encoded, as `predict`
    sends files); ``names_by_id`` collects the class names the export reports."""

    needs_frames = True

    def __init__(self, model_dir: str):
        import visionpipe  # noqa: F401
        import tensorflow as tf

        if not (Path(model_dir) / "saved_model.pb").exists():
            raise UserError(f"--model {model_dir}: no saved_model.pb there (pass a version "
                            f"directory, e.g. serving_models/<name>/1)")
        try:
            self.fn = tf.saved_model.load(model_dir).signatures["serving_default"]
        except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
            raise UserError(f"--model {model_dir}: not a loadable SavedModel with a "
                            f"serving_default signature ({str(err).strip().splitlines()[0]})") from None
        missing = set(DETECTION_OUTPUTS) - set(self.fn.structured_outputs)
        if missing:
            raise UserError(f"--model {model_dir}: not a detector (its serving_default has no "
                            f"{', '.join(sorted(missing))})")
        self.tf = tf
        self.names_by_id: Dict[int, str] = {}

    def __call__(self, number: int, frame: np.ndarray):
        out = self.fn(images=self.tf.constant([_png(frame)]))
        return parse_detections({k: v.numpy()[0] for k, v in out.items()}, frame.shape,
                                self.names_by_id)


class ServedDetector:
    """A detector served by a TF Serving-compatible server (REST or gRPC), one request a frame
    (retried on UNAVAILABLE within ``deadline_s``)."""

    needs_frames = True

    def __init__(self, server: str, model_name: str, protocol: str = "rest",
                 deadline_s: float = 30.0):
        from visionpipe.serving import client

        if not model_name:
            raise UserError("--server needs --model_name (the served model's name)")
        try:
            self.client = (client.RestClient(server) if protocol == "rest"
                           else client.GrpcClient(server))
        except ValueError as err:
            raise UserError(f"--server {server}: {err}") from None
        self.module, self.server, self.model_name = client, server, model_name
        self.deadline_s = deadline_s
        self.names_by_id: Dict[int, str] = {}

    def __call__(self, number: int, frame: np.ndarray):
        images = [_png(frame)]
        try:
            (row,) = self.module.with_retries(
                lambda timeout: self.client.predict(self.model_name, images, "serving_default",
                                                    timeout),
                self.client.retryable, self.deadline_s, 3)
        except self.module.ServingClientError as err:
            raise UserError(f"--server {self.server}: {err}") from None
        missing = set(DETECTION_OUTPUTS) - set(row)
        if missing:
            raise UserError(f"--server {self.server} model {self.model_name}: not a detector "
                            f"(no {', '.join(sorted(missing))} in its answer)")
        return parse_detections(row, frame.shape, self.names_by_id)

    def close(self) -> None:
        if hasattr(self.client, "close"):
            self.client.close()


class MotFileDetector:
    """The boxes of a MOT det.txt, frame by frame (no model: measures the tracker alone)."""

    needs_frames = False

    def __init__(self, path: str):
        if not Path(path).is_file():
            raise UserError(f"--detections {path}: file not found")
        try:
            self.rows = mot.read_mot_file(path)
        except ValueError as err:
            raise UserError(str(err)) from None
        if not len(self.rows):
            raise UserError(f"--detections {path}: no detection rows")
        self.names_by_id: Dict[int, str] = {}

    @property
    def frame_numbers(self) -> List[int]:
        return list(range(1, int(self.rows[:, 0].max()) + 1))

    def __call__(self, number: int, frame: Optional[np.ndarray]):
        d = mot.rows_of_frame(self.rows, number)
        return mot.xywh_to_xyxy(d[:, 2:6]), d[:, 6], np.zeros(len(d), dtype=np.int64)


def saved_model_embedder(model_dir: str, output: str = "embedding"):
    """A CropEmbedder around an embedder export's ``serving_tensor`` signature (its ``output``
    key, the embedding task's name for it by default)."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.tracking.appearance import CropEmbedder

    try:
        fn = tf.saved_model.load(model_dir).signatures["serving_tensor"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise UserError(f"--embedder {model_dir}: not a SavedModel with a serving_tensor "
                        f"signature ({str(err).strip().splitlines()[0]})") from None
    (spec,) = fn.structured_input_signature[1].values()
    height, width = spec.shape[1], spec.shape[2]
    if height is None or width is None:
        raise UserError(f"--embedder {model_dir}: its serving_tensor input has no fixed size")
    outputs = fn.structured_outputs
    if output not in outputs:
        raise UserError(f"--embedding_output {output!r}: not an output of {model_dir}'s "
                        f"serving_tensor (it has {', '.join(sorted(outputs))})")
    return CropEmbedder(lambda batch: fn(tf.constant(batch))[output].numpy(), (height, width))


# --------------------------------------------------------------------------- output
def _colour(track_id: int) -> Tuple[int, int, int]:
    return PALETTE[(track_id * 7) % len(PALETTE)]


class AnnotatedVideo:
    """An mp4 (OpenCV ``mp4v``) of the frames with each track's box, id and trail drawn."""

    def __init__(self, path: Path, fps: float, size: Tuple[int, int]):
        import cv2

        self.cv2 = cv2
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.size = size  # (height, width)
        self.writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*"mp4v"), float(fps),
                                      (size[1], size[0]))
        if not self.writer.isOpened():
            raise UserError(f"{self.path}: OpenCV cannot write an mp4 video here")
        self.trails: Dict[int, collections.deque] = {}
        self.frames = 0

    def draw(self, frame: np.ndarray, tracked, names_by_id: Optional[Dict[int, str]] = None) -> np.ndarray:
        """The RGB frame with the tracks drawn (trails of the last TRAIL_LENGTH centres)."""
        cv2 = self.cv2
        canvas = np.ascontiguousarray(frame[..., :3]).copy()
        for obj in tracked:
            x1, y1, x2, y2 = [int(round(v)) for v in obj.box]
            trail = self.trails.setdefault(obj.track_id, collections.deque(maxlen=TRAIL_LENGTH))
            trail.append(((x1 + x2) // 2, (y1 + y2) // 2))
            colour = _colour(obj.track_id)
            cv2.rectangle(canvas, (x1, y1), (x2, y2), colour, 2)
            label = f"{obj.track_id}"
            if names_by_id and obj.class_id in names_by_id:
                label += f" {names_by_id[obj.class_id]}"
            cv2.putText(canvas, label, (x1, max(10, y1 - 4)), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                        colour, 1, cv2.LINE_AA)
            if len(trail) > 1:
                cv2.polylines(canvas, [np.array(trail, np.int32).reshape(-1, 1, 2)], False,
                              colour, 2)
        return canvas

    def write(self, canvas: np.ndarray) -> None:
        if canvas.shape[:2] != tuple(self.size):
            raise UserError(f"frame {self.frames + 1} is {canvas.shape[1]}x{canvas.shape[0]}, "
                            f"the video {self.size[1]}x{self.size[0]}: frames must share one size")
        self.writer.write(self.cv2.cvtColor(canvas, self.cv2.COLOR_RGB2BGR))
        self.frames += 1

    def close(self) -> None:
        self.writer.release()


def track_frames(frames, detector: Callable, tracker, video: Optional[Callable] = None) -> np.ndarray:
    """The command's core: ``detector(frame number, frame) -> (xyxy, scores, classes)`` then
    the tracker on every ``(number, frame)`` of ``frames`` (``frame`` None when tracking a
    det.txt without pixels); ``video(number, frame, tracked)`` is called per frame. MOT result
    rows."""
    tracker.reset()
    rows: List[List[float]] = []
    for number, frame in frames:
        boxes, scores, classes = detector(number, frame)
        tracked = tracker.update(boxes, scores, classes, image=frame)
        rows += mot.tracks_to_rows(number, tracked)
        if video is not None and frame is not None:
            video(number, frame, tracked)
    return np.array(rows, dtype=np.float64).reshape(-1, 10)


def make_detector(model: Optional[str] = None, server: Optional[str] = None,
                  model_name: str = "", protocol: str = "rest",
                  detections: Optional[str] = None):
    if sum(x is not None for x in (model, server, detections)) != 1:
        raise UserError("pass exactly one of --model, --server and --detections")
    if detections is not None:
        return MotFileDetector(detections)
    if server is not None:
        return ServedDetector(server, model_name, protocol)
    return SavedModelDetector(model)


def score(gt_path: str, rows: np.ndarray, frames: Sequence[int], name: str) -> Dict[str, float]:
    """motmetrics' MOTA, IDF1, ... of ``rows`` against a MOT gt.txt (its ignore marks, conf 0,
    left out), over the frames tracked."""
    if not Path(gt_path).is_file():
        raise UserError(f"--gt {gt_path}: file not found")
    try:
        gt = mot.read_mot_file(gt_path)
    except ValueError as err:
        raise UserError(str(err)) from None
    gt = gt[gt[:, 6] != 0]
    tracked = set(frames)
    gt = gt[np.isin(gt[:, 0].astype(int), list(tracked))]
    return mot.mot_metrics({name: (gt, rows)})["overall"]


def run(input_path: Optional[str] = None, model: Optional[str] = None,
        server: Optional[str] = None, model_name: str = "", protocol: str = "rest",
        detections: Optional[str] = None, tracker_name: Optional[str] = None,
        tracker_config: Optional[str] = None, embedder: Optional[str] = None,
        embedding_output: str = "embedding", gt: Optional[str] = None,
        output_dir: str = "tracks", video: bool = True,
        fps: Optional[float] = None, max_frames: int = 0,
        detector: Optional[Callable] = None) -> Dict[str, object]:
    """Track ``input_path`` (frames, a video; None with ``detections``); what was written.
    ``detector`` (``(number, frame) -> (xyxy, scores, classes)``) replaces the three sources."""
    from visionpipe.tracking import make_tracker
    from visionpipe.tracking.appearance import ColourHistogramEmbedder

    if max_frames < 0:
        raise UserError(f"--max_frames must be >= 0, got {max_frames}")
    if fps is not None and fps <= 0:
        raise UserError(f"--fps must be > 0, got {fps}")
    config, source = resolve_tracker_config(model, tracker_name, tracker_config)
    if embedder and config.tracker != "deepsort":
        raise UserError(f"--embedder is for --tracker deepsort (this run tracks with "
                        f"{config.tracker})")
    if embedder and not Path(embedder).is_dir():
        raise UserError(f"--embedder {embedder}: no such SavedModel directory")
    if gt and not Path(gt).is_file():
        raise UserError(f"--gt {gt}: file not found")
    detector = detector or make_detector(model, server, model_name, protocol, detections)
    if input_path is not None:
        frames, video_fps, name = open_frames(input_path, max_frames)
    elif getattr(detector, "needs_frames", True):
        raise UserError("a video file or frames folder is needed (only --detections tracks "
                        "without one)")
    elif config.tracker == "deepsort":
        raise UserError("--tracker deepsort needs the frames (its appearance embeddings): "
                        "pass the video or frames folder with --detections")
    else:
        numbers = detector.frame_numbers[:max_frames or None]
        frames, video_fps, name = ((n, None) for n in numbers), None, Path(detections).stem
    appearance = None
    if config.tracker == "deepsort":
        appearance = (saved_model_embedder(embedder, embedding_output) if embedder
                      else ColourHistogramEmbedder())
    tracker = make_tracker(config, appearance)
    out = Path(output_dir)
    out.mkdir(parents=True, exist_ok=True)
    video_path = out / f"{name}.tracks.mp4"
    state: Dict[str, AnnotatedVideo] = {}
    seen: List[int] = []

    def each_frame(number, frame, tracked):
        if not video:
            return
        if "video" not in state:
            state["video"] = AnnotatedVideo(video_path, fps or video_fps or 25.0, frame.shape[:2])
        writer = state["video"]
        writer.write(writer.draw(frame, tracked, getattr(detector, "names_by_id", None)))

    def counted(frames):
        for number, frame in frames:
            seen.append(number)
            yield number, frame

    try:
        rows = track_frames(counted(frames), detector, tracker, each_frame)
    finally:
        if "video" in state:
            state["video"].close()
        if hasattr(detector, "close"):
            detector.close()
    results = mot.write_mot_results(out / f"{name}.mot.txt", rows)
    summary: Dict[str, object] = {
        "video": str(video_path) if "video" in state else None, "results": str(results),
        "frames": len(seen), "tracks": len(set(rows[:, 1].astype(int))) if len(rows) else 0,
        "tracker": config.tracker, "tracker_config": source,
        "appearance": ("none" if appearance is None else
                       ("embedder " + embedder if embedder else "colour histogram"))}
    if gt:
        metrics = score(gt, rows, seen, name)
        metrics_path = out / f"{name}.metrics.json"
        metrics_path.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
        summary["metrics"], summary["metrics_file"] = metrics, str(metrics_path)
    return summary


def cmd_track(args) -> int:
    summary = run(args.input, model=args.model, server=args.server, model_name=args.model_name,
                  protocol=args.protocol, detections=args.detections, tracker_name=args.tracker,
                  tracker_config=args.tracker_config, embedder=args.embedder,
                  embedding_output=args.embedding_output, gt=args.gt,
                  output_dir=args.output_dir, video=not args.no_video, fps=args.fps,
                  max_frames=args.max_frames)
    print(f"tracked {summary['frames']} frames with {summary['tracker']} "
          f"(config: {summary['tracker_config']}; appearance: {summary['appearance']}): "
          f"{summary['tracks']} tracks")
    if summary["video"]:
        print(f"  annotated video  {summary['video']}")
    print(f"  MOT results      {summary['results']}")
    if "metrics" in summary:
        m = summary["metrics"]
        print(f"  vs {args.gt}: MOTA {m['mota']:.3f}  IDF1 {m['idf1']:.3f}  MOTP {m['motp']:.3f}  "
              f"ID switches {int(m['num_switches'])}  FP {int(m['num_false_positives'])}  "
              f"misses {int(m['num_misses'])}  ({summary['metrics_file']})")
    return 0
