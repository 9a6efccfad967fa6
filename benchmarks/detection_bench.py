"""BCCD detection benchmark: train within a stated CPU-time budget, then report COCO mAP
(pycocotools) on the official test split, mAP under synthetic occluders over 10/25/50% of
each box, int8-vs-float TFLite mAP and latency, and the share of inference time spent in NMS.

    python benchmarks/detection_bench.py --minutes 30            # the issue's budget
    python benchmarks/detection_bench.py --minutes 4 --json out.json model.image_size=256
    python benchmarks/detection_bench.py --config configs/bccd_ssd.yaml --minutes 5   # SSD-MobileNetV2

Run it once per architecture config (RetinaNet: the default config; SSD: configs/bccd_ssd.yaml;
or `detection.architecture=...`) at the same --minutes for the README's comparison.

The Examples are built exactly as ImageExampleGen builds them (same encoder, and images with
a zero-area box are quarantined, not trained on); splits are BCCD's ImageSets/Main files as in
configs/bccd_detection.yaml (train -> train, val -> eval, test -> test).
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Dict, List, Tuple

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401
import keras_cv  # noqa: E402,F401  (before tensorflow_model_optimization, which optimize imports)
import tensorflow as tf  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "bccd_detection.yaml"


def load_bccd(config) -> Tuple[Dict[str, List[bytes]], List[str], Dict[str, int]]:
    """Serialized Examples per pipeline split, the class names, and what was quarantined."""
    from visionpipe.components.image_example_gen.encoding import to_tf_example
    from visionpipe.components.image_example_gen.items import ValidImage
    from visionpipe.components.image_example_gen.sources import make_source

    data = config.data
    if not Path(data.path).is_dir():
        raise SystemExit(f"BCCD not found at {data.path} (expected ../shared/datasets/bccd/BCCD)")
    source = make_source(data)
    class_names = list(data.class_names or source.class_names)
    splits: Dict[str, List[bytes]] = {}
    quarantined = {"zero_area_box": 0, "source_problem": 0}
    for item in source.items:
        if item.problem is not None:
            quarantined["source_problem"] += 1
            continue
        encoded = Path(item.path).read_bytes()
        height, width = tf.image.extract_jpeg_shape(encoded).numpy()[:2]
        boxes = [(o.box[1] / height, o.box[0] / width, o.box[3] / height, o.box[2] / width)
                 for o in item.objects]
        if any(b[2] <= b[0] or b[3] <= b[1] for b in boxes):
            quarantined["zero_area_box"] += 1
            continue
        boxes = [tuple(float(np.clip(v, 0.0, 1.0)) for v in b) for b in boxes]
        labels = [o.label for o in item.objects]
        image = ValidImage(sha256=hashlib.sha256(encoded).hexdigest(), encoded=encoded,
                           image_format="jpeg", height=int(height), width=int(width),
                           filename=item.filename, labels=sorted(set(labels)), boxes=boxes,
                           object_labels=labels, masks=[], text=None, source_split=item.source_split)
        split = data.source_split_map.get(item.source_split, item.source_split)
        splits.setdefault(split, []).append(to_tf_example(image, class_names))
    return splits, class_names, quarantined


class TimeBudget(tf.keras.callbacks.Callback):
    """Stops training once the wall-clock budget is spent (checked after every batch)."""

    def __init__(self, seconds: float):
        super().__init__()
        self.seconds = seconds
        self.start = time.time()
        self.steps = 0

    def on_train_batch_end(self, batch, logs=None):
        self.steps += 1
        if time.time() - self.start > self.seconds:
            self.model.stop_training = True


def pairs(task, records: List[bytes]) -> tf.data.Dataset:
    from visionpipe.core import features

    return tf.data.Dataset.from_tensor_slices(records).map(
        lambda s: task.example_to_inputs(features.parse_single(s, task.feature_keys)),
        num_parallel_calls=tf.data.AUTOTUNE)


def mean_latency_ms(fn, inputs, repeats: int) -> float:
    fn(inputs[0])  # trace / warm up
    start = time.perf_counter()
    for i in range(repeats):
        fn(inputs[i % len(inputs)])
    return 1000.0 * (time.perf_counter() - start) / repeats


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--minutes", type=float, default=30.0, help="training wall-clock budget")
    parser.add_argument("--latency-images", type=int, default=10)
    parser.add_argument("--skip-tflite", action="store_true", help="no float/int8 TFLite comparison")
    parser.add_argument("--calibration-images", type=int, default=32)
    parser.add_argument("--json", help="also write the results here")
    parser.add_argument("overrides", nargs="*", metavar="key=value")
    args = parser.parse_args(argv)

    from visionpipe.models import data
    from visionpipe.tasks.detection import evaluation, tflite
    from visionpipe.tasks import get_task
    from visionpipe.core.config import load_config

    os.chdir(REPO)  # the config's data.path is relative to the project root
    config = load_config(args.config, args.overrides)
    tf.keras.utils.set_random_seed(config.train.seed)
    splits, class_names, quarantined = load_bccd(config)
    task = get_task(config, class_names)
    batch = config.train.batch_size
    train = (pairs(task, splits["train"]).cache().shuffle(512, seed=config.train.seed).repeat())
    train = task.batch_dataset(train, batch, drop_remainder=True)
    if config.augment.enabled:
        train = data.augment_batches(train, task)
    train = train.prefetch(tf.data.AUTOTUNE)
    test = task.batch_dataset(pairs(task, splits["test"]).cache(), 8)
    # Decode the evaluation images before training: tf.data traces its functions from the
    # source files, which may change on disk during a long run.
    for _ in test:
        pass
    images = [x[None] for x, _ in pairs(task, splits["test"][:args.latency_images]).as_numpy_iterator()]
    calibration = [x[None] for x, _ in
                   pairs(task, splits["train"][:args.calibration_images]).as_numpy_iterator()]

    model = task.build_model()
    task.compile_model(model, config.train.learning_rate)
    budget = TimeBudget(args.minutes * 60.0)
    steps_per_epoch = max(1, len(splits["train"]) // batch)
    history = model.fit(train, steps_per_epoch=steps_per_epoch, epochs=config.train.epochs,
                        callbacks=[budget], verbose=2)
    train_seconds = time.time() - budget.start

    float_metrics = task.evaluate_model(model, test)
    raw = tf.function(lambda x: task.raw_predictions(model, x), autograph=False)
    full = tf.function(lambda x: task.serving_outputs(model, x), autograph=False)
    raw_ms = mean_latency_ms(raw, images, args.latency_images)
    full_ms = mean_latency_ms(full, images, args.latency_images)

    results = {
        "dataset": "BCCD", "split": "test", "num_test_images": len(splits["test"]),
        "num_train_images": len(splits["train"]), "quarantined_images": quarantined,
        "config": {"architecture": config.detection.architecture, "backbone": config.model.backbone,
                   "image_size": config.model.image_size, "batch_size": batch,
                   "pretrained_backbone": bool(config.model.weights)},
        "cpu_budget": {"minutes": args.minutes, "cpu_cores": os.cpu_count(),
                       "train_seconds": round(train_seconds, 1), "steps": budget.steps,
                       "epochs_seen": round(budget.steps / steps_per_epoch, 2),
                       "final_loss": float(history.history["loss"][-1])},
        "float": {"map_50": float_metrics["map_50"], "map": float_metrics["map"],
                  **{k: v for k, v in float_metrics.items() if k.startswith("ap/")}},
        "latency_ms_batch1": {"network_and_decode": round(raw_ms, 2), "with_nms": round(full_ms, 2),
                              "nms_share": round(max(0.0, 1.0 - raw_ms / full_ms), 4)},
    }
    report(results, args.json)  # a later stage failing must not lose these numbers
    results["occlusion"] = task.occlusion_report(model, test)
    report(results, args.json)
    if not args.skip_tflite:
        results["tflite"] = tflite_comparison(task, model, calibration, test, args, evaluation, tflite)
        report(results, args.json)
    return 0


def report(results, path) -> None:
    print(json.dumps(results, indent=2), flush=True)
    if path:
        Path(path).write_text(json.dumps(results, indent=2))


def tflite_comparison(task, model, calibration, test, args, evaluation, tflite) -> Dict[str, object]:
    import tempfile

    out: Dict[str, object] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in ("float32", "int8"):
            path = os.path.join(tmp, f"detector_{mode}.tflite")
            Path(path).write_bytes(tflite.convert(task, model, mode, lambda: ([c] for c in calibration)))
            metrics = task.evaluate_tflite(path, test)
            predict = evaluation.tflite_predict_fn(path)
            out[mode] = {"map_50": metrics["map_50"], "map": metrics["map"],
                         "size_kb": round(os.path.getsize(path) / 1024, 1),
                         "latency_ms": round(mean_latency_ms(predict, calibration, args.latency_images), 2)}
    out["int8_map_50_drop_points"] = round(100 * (out["float32"]["map_50"] - out["int8"]["map_50"]), 2)
    out["int8_over_float_latency"] = round(out["int8"]["latency_ms"] / out["float32"]["latency_ms"], 3)
    return out


if __name__ == "__main__":
    sys.exit(main())
