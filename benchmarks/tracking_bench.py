"""Tracking benchmark (issue 19): our SORT, ByteTrack and DeepSORT beside roboflow
``supervision``'s ByteTrack, side by side in one run, on the same detections.

1. PETS 2009 S3-MF1 (``../shared/datasets/pets09_s3mf1``: 107 real frames, ground truth and
   public detections): MOTA, IDF1, ID switches (motmetrics, IoU >= 0.5) and tracker frames/s
   (frames decoded beforehand; the best of 3 runs).
   The public detections measure the trackers alone. Target: our ByteTrack >= the peer's MOTA
   and IDF1; DeepSORT the fewest ID switches.
2. Generated occlusion sequences (``shapes.render_occlusion_sequence``: a walker passes
   completely behind an occluder), detections from the ground truth with corner noise, a
   score that falls with occlusion and 10% dropped (``tests/support/tracking_detections``):
   the same table over the sequences together.
3. Tracker overhead at 20 objects per frame (20 boxes on straight noisy paths, 200 frames,
   the frame's pixels given to DeepSORT's colour-histogram embedder) as a ratio of the
   detector's time per frame: the project's detector (configs/bccd_detection.yaml:
   RetinaNet on MobileNetV2 at 320 px, network + NMS, batch 1, untrained weights, which do
   not change its latency), best of 3 runs, with the default BLAS threads and with one
   (threadpoolctl: the trackers' 4x4 Kalman solves are slower multi-threaded on a busy
   machine). Target: <= 0.10.

The peer runs only where supervision 0.25.1 is importable from ``SUPERVISION_PATH``
(default ``/tmp/sv``, installed for benchmarking only, never into the project's
environment: ``pip install --no-deps supervision==0.25.1 --target /tmp/sv``); otherwise its
rows print as skipped. It runs twice: with its defaults, and with its birth settings set to
ours (``minimum_consecutive_frames=3``, ``track_activation_threshold=0.6``).

    python -m benchmarks tracking
    python -m benchmarks.tracking_bench [--json out.json] [--skip-detector]
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import Callable, Dict, List, Optional, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
os.environ["TF_USE_LEGACY_KERAS"] = "1"

import visionpipe  # noqa: E402,F401

PETS = REPO.parent / "shared" / "datasets" / "pets09_s3mf1"
SUPERVISION_PATH = os.environ.get("SUPERVISION_PATH", "/tmp/sv")
SUPERVISION_VERSION = "0.25.1"
OURS = ("sort", "bytetrack", "deepsort")
#: timings are the best of this many runs (the machine may be shared)
REPEATS = 3

#: (frame number) -> (xyxy, scores, image or None); a run returns MOT result rows
Frames = List[Tuple[int, np.ndarray, np.ndarray, Optional[np.ndarray]]]


def load_supervision():
    """The supervision module from SUPERVISION_PATH, or (None, why not)."""
    if not os.path.isdir(SUPERVISION_PATH):
        return None, f"{SUPERVISION_PATH} not found (pip install --no-deps " \
                     f"supervision=={SUPERVISION_VERSION} --target {SUPERVISION_PATH})"
    sys.path.append(SUPERVISION_PATH)
    try:
        import supervision
    except Exception as err:  # noqa: BLE001 - a broken side install is a skip, not a crash
        return None, f"supervision at {SUPERVISION_PATH} does not import ({err})"
    if supervision.__version__ != SUPERVISION_VERSION:
        return None, f"supervision {supervision.__version__} at {SUPERVISION_PATH}, " \
                     f"not {SUPERVISION_VERSION}"
    return supervision, ""


# --------------------------------------------------------------------------- runners
def run_ours(name: str, frames: Frames) -> Tuple[np.ndarray, float]:
    """(MOT rows, seconds in the tracker, DeepSORT's embedding included)."""
    from visionpipe.tracking import TrackerConfig, make_tracker, mot
    from visionpipe.tracking.appearance import ColourHistogramEmbedder

    tracker = make_tracker(TrackerConfig(tracker=name), ColourHistogramEmbedder())
    rows: List[List[float]] = []
    start = time.perf_counter()
    for number, boxes, scores, image in frames:
        rows += mot.tracks_to_rows(number, tracker.update(boxes, scores, None, image=image))
    return np.array(rows, float).reshape(-1, 10), time.perf_counter() - start


def run_supervision(sv, frames: Frames, **kwargs) -> Tuple[np.ndarray, float]:
    tracker = sv.ByteTrack(**kwargs)
    rows: List[List[float]] = []
    start = time.perf_counter()
    for number, boxes, scores, _ in frames:
        detections = sv.Detections(xyxy=boxes.astype(np.float32).reshape(-1, 4),
                                   confidence=scores.astype(np.float32),
                                   class_id=np.zeros(len(boxes), dtype=int))
        out = tracker.update_with_detections(detections)
        for (x1, y1, x2, y2), tid, conf in zip(out.xyxy, out.tracker_id, out.confidence):
            rows.append([number, int(tid), x1, y1, x2 - x1, y2 - y1, conf, -1, -1, -1])
    return np.array(rows, float).reshape(-1, 10), time.perf_counter() - start


def runners(sv) -> Dict[str, Optional[Callable[[Frames], Tuple[np.ndarray, float]]]]:
    out: Dict[str, Optional[Callable]] = {name: (lambda f, n=name: run_ours(n, f)) for name in OURS}
    peers = {"supervision ByteTrack (defaults)": {},
             "supervision ByteTrack (our birth settings)": {"minimum_consecutive_frames": 3,
                                                            "track_activation_threshold": 0.6}}
    for label, kwargs in peers.items():
        out[label] = None if sv is None else (lambda f, k=kwargs: run_supervision(sv, f, **k))
    return out


# --------------------------------------------------------------------------- data
def _image(path) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(path).convert("RGB"))


def frames_of(det: np.ndarray, numbers, image_of) -> Frames:
    from visionpipe.tracking import mot

    out = []
    for number in numbers:
        d = mot.rows_of_frame(det, number)
        out.append((number, mot.xywh_to_xyxy(d[:, 2:6]), d[:, 6].astype(float),
                    image_of(number)))
    return out


def pets_sequences():
    from visionpipe.tracking import mot

    sequence = mot.read_mot_sequence(PETS)
    images = {n: _image(p) for n, p in sequence.frames.items()}  # decoded before timing
    return {"PETS09-S3MF1": (sequence.gt, frames_of(sequence.det, sequence.frame_numbers,
                                                      images.get))}


def generated_sequences(count: int, num_frames: int, size: int):
    from tests.support.tracking_detections import detections_from_frames
    from visionpipe.datasets import shapes

    out = {}
    for seed in range(count):
        rendered = list(shapes.render_occlusion_sequence(num_frames, size, seed=seed, sequence=seed))
        det, gt = detections_from_frames(rendered, seed=seed)
        images = {f.index + 1: f.image for f in rendered}
        out[f"occlusion-{seed}"] = (gt, frames_of(det, range(1, num_frames + 1), images.get))
    return out


def crowd_frames(objects: int = 20, num_frames: int = 200, size: int = 320,
                 seed: int = 0) -> Frames:
    """``objects`` boxes on straight paths with 1 px noise, scores in [0.3, 0.95], and a
    frame of pixels (the boxes filled with their own colours) for the embedder."""
    rng = np.random.default_rng(seed)
    start = rng.uniform(20, size - 40, (objects, 2))
    velocity = rng.uniform(-1.5, 1.5, (objects, 2))
    wh = rng.uniform(14, 28, (objects, 2))
    colours = rng.integers(0, 256, (objects, 3), dtype=np.uint8)
    out = []
    for number in range(1, num_frames + 1):
        xy = np.clip(start + velocity * number, 0, size - wh)
        boxes = np.concatenate([xy, xy + wh], 1) + rng.normal(0, 1.0, (objects, 4))
        image = np.full((size, size, 3), 90, np.uint8)
        for box, colour in zip(boxes.astype(int).clip(0, size), colours):
            image[box[1]:box[3], box[0]:box[2]] = colour
        out.append((number, boxes, rng.uniform(0.3, 0.95, objects), image))
    return out


def detector_ms_per_frame(repeats: int = 20) -> Dict[str, object]:
    import keras_cv  # noqa: F401  (before tensorflow_model_optimization)
    import tensorflow as tf

    from visionpipe.core.config import load_config
    from visionpipe.tasks import get_task

    config = load_config(str(REPO / "configs" / "bccd_detection.yaml"), [])
    task = get_task(config, ["RBC", "WBC", "Platelets"])
    tf.keras.utils.set_random_seed(0)
    model = task.build_model()
    size = config.model.image_size
    serve = tf.function(lambda x: task.serving_outputs(model, x), autograph=False)
    frame = tf.random.uniform([1, size, size, 3], 0, 255)
    serve(frame)  # trace
    start = time.perf_counter()
    for _ in range(repeats):
        serve(frame)
    return {"detector": f"{config.detection.architecture} {config.model.backbone} {size}px "
                        f"(network + NMS, batch 1, {tf.config.threading.get_intra_op_parallelism_threads() or 'default'} threads)",
            "ms_per_frame": 1000.0 * (time.perf_counter() - start) / repeats}


# --------------------------------------------------------------------------- report
def score_table(sequences, table_runners) -> Dict[str, Dict[str, object]]:
    from visionpipe.tracking import mot

    out = {}
    for label, runner in table_runners.items():
        if runner is None:
            out[label] = {"skipped": True}
            continue
        results, seconds, frames = {}, 0.0, 0
        for name, (gt, frame_list) in sequences.items():
            runs = [runner(frame_list) for _ in range(REPEATS)]  # deterministic: same rows
            results[name] = (gt, runs[0][0])
            seconds += min(elapsed for _, elapsed in runs)
            frames += len(frame_list)
        m = mot.mot_metrics(results)["overall"]
        out[label] = {"mota": round(m["mota"], 3), "idf1": round(m["idf1"], 3),
                      "id_switches": int(m["num_switches"]),
                      "false_positives": int(m["num_false_positives"]),
                      "misses": int(m["num_misses"]), "frames_per_s": round(frames / seconds, 1)}
    return out


def print_table(title: str, table: Dict[str, Dict[str, object]], skip_reason: str) -> None:
    print(f"\n{title}")
    print(f"  {'tracker':44s} {'MOTA':>6s} {'IDF1':>6s} {'IDsw':>5s} {'FP':>5s} {'miss':>5s} "
          f"{'frames/s':>9s}")
    for label, r in table.items():
        if r.get("skipped"):
            print(f"  {label:44s} skipped: {skip_reason}")
            continue
        print(f"  {label:44s} {r['mota']:6.3f} {r['idf1']:6.3f} {r['id_switches']:5d} "
              f"{r['false_positives']:5d} {r['misses']:5d} {r['frames_per_s']:9.1f}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--generated", type=int, default=5, help="generated sequences")
    parser.add_argument("--generated-frames", type=int, default=60)
    parser.add_argument("--generated-size", type=int, default=128)
    parser.add_argument("--skip-detector", action="store_true",
                        help="no detector latency (no overhead ratio)")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    sv, skip_reason = load_supervision()
    if sv is None:
        print(f"supervision ByteTrack peer: skipped ({skip_reason})")
    table_runners = runners(sv)
    out: Dict[str, object] = {"date": time.strftime("%Y-%m-%d"),
                              "supervision": SUPERVISION_VERSION if sv else None}
    if PETS.is_dir():
        out["pets09"] = score_table(pets_sequences(), table_runners)
        print_table("PETS09 S3-MF1, public detections (107 frames)", out["pets09"], skip_reason)
    else:
        print(f"PETS09: skipped ({PETS} not found)")
    out["generated"] = score_table(
        generated_sequences(args.generated, args.generated_frames, args.generated_size),
        table_runners)
    print_table(f"generated occlusion sequences ({args.generated} x {args.generated_frames} "
                f"frames, {args.generated_size} px)", out["generated"], skip_reason)

    crowd = crowd_frames()
    overhead: Dict[str, Dict[str, float]] = {}
    from threadpoolctl import threadpool_limits

    for label, runner in table_runners.items():
        if runner is None:
            continue
        runner(crowd[:5])  # warm up
        # the best of 3 runs: the machine is shared, and one run's time is noisy
        default = min(runner(crowd)[1] for _ in range(REPEATS))
        with threadpool_limits(limits=1, user_api="blas"):
            single = min(runner(crowd)[1] for _ in range(REPEATS))
        overhead[label] = {"default_blas_threads": 1000.0 * default / len(crowd),
                           "one_blas_thread": 1000.0 * single / len(crowd)}
    out["tracker_ms_per_frame_20_objects"] = {
        k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in overhead.items()}
    print("\ntracker time per frame at 20 objects (200 frames, best of 3; BLAS default "
          "threads / 1 thread)")
    detector = None if args.skip_detector else detector_ms_per_frame()
    if detector:
        out["detector"] = {"name": detector["detector"],
                           "ms_per_frame": round(detector["ms_per_frame"], 2)}
        print(f"  detector {detector['detector']}: {detector['ms_per_frame']:.1f} ms/frame")
    for label, ms in overhead.items():
        line = (f"  {label:44s} {ms['default_blas_threads']:7.3f} / "
                f"{ms['one_blas_thread']:7.3f} ms")
        if detector:
            ratios = {k: v / detector["ms_per_frame"] for k, v in ms.items()}
            out.setdefault("overhead_ratio", {})[label] = {k: round(v, 4)
                                                           for k, v in ratios.items()}
            line += (f"  = {ratios['default_blas_threads']:.3f} / "
                     f"{ratios['one_blas_thread']:.3f} x the detector (target <= 0.10)")
        print(line)
    for label in table_runners:
        if table_runners[label] is None:
            print(f"  {label:44s} skipped: {skip_reason}")
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
