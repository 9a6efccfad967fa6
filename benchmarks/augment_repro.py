"""Is training augmentation reproducible? Builds the same training dataset twice (fresh task
objects each time) through `data.make_dataset` and compares the augmented batches, for
classification with every AugmentConfig option on and for detection's box augmentation.
Also times the input pipeline alone (images/s).

    TF_USE_LEGACY_KERAS=1 python -m benchmarks.augment_repro [--batches 12] [--throughput]
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import numpy as np

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")

EVERYTHING = ["augment.horizontal_flip=true", "augment.vertical_flip=true", "augment.rotation=0.2",
              "augment.zoom=0.2", "augment.translation=0.1", "augment.shear=0.1",
              "augment.brightness=0.2", "augment.contrast=0.2", "augment.gamma=0.3",
              "augment.saturation=0.3", "augment.hue=0.1", "augment.random_crop=0.2",
              "augment.gaussian_noise=0.02", "augment.cutout=0.25", "augment.mixup_alpha=0.2",
              "augment.cutmix_alpha=1.0", "augment.randaugment_magnitude=0.3"]
DETECTION = ["augment.horizontal_flip=true", "augment.vertical_flip=true", "augment.zoom=0.3",
             "augment.translation=0.1", "augment.brightness=0.2", "augment.contrast=0.2",
             "augment.saturation=0.3", "augment.hue=0.1", "augment.cutout=0.2", "detection.mosaic=true"]


def classification_files(tmp: str, n: int = 96):
    from visionpipe.components.image_example_gen import ingest
    from visionpipe.models import data
    from visionpipe.core.examples import split_files
    from visionpipe.core.config import load_config
    from visionpipe.pipeline.data_source import resolve_data_source

    config = load_config(overrides=["data.source=digits", f"data.num_images={n}", "data.image_size=16",
                                    "model.image_size=16", f"runner.output_dir={tmp}"])
    result = ingest(resolve_data_source(config, f"{tmp}/run"), f"{tmp}/ingest")
    return split_files(result.examples_uri, "train"), result.class_names


def detection_files(tmp: str, n: int = 32, size: int = 32):
    import tensorflow as tf

    from tests.detection.scenes import detection_example, random_scene

    rng = np.random.default_rng(0)
    path = f"{tmp}/detection.tfrecord.gz"
    with tf.io.TFRecordWriter(path, options="GZIP") as writer:
        for _ in range(n):
            writer.write(detection_example(*random_scene(rng, size, 2), ["red", "green"]))
    return [path], ["red", "green"]


def make(task_name, files, names, overrides, batch, seed=5):
    from visionpipe.models import data
    from visionpipe.tasks import get_task
    from visionpipe.core.config import load_config

    config = load_config(overrides=[f"task={task_name}", *overrides])
    return data.make_dataset(files, get_task(config, names), batch, training=True, seed=seed)


def batches(dataset, n):
    import tensorflow as tf

    out = []
    for x, y in dataset.take(n):
        leaves = [x] + tf.nest.flatten(y)
        out.append([np.asarray(t) for t in leaves])
    return out


def compare(label, a, b):
    def diff(p, q):
        if p.shape != q.shape:
            return float("inf")  # e.g. a different number of boxes after Mosaic
        return float(np.max(np.abs(p - q))) if p.size else 0.0

    diffs = [max(diff(p, q) for p, q in zip(ba, bb)) for ba, bb in zip(a, b)]
    same = sum(d == 0 for d in diffs)
    print(f"{label}: {same}/{len(diffs)} batches identical; max |diff| per batch: "
          + " ".join(f"{d:.3g}" for d in diffs))
    return same == len(diffs)


def throughput(task_name, files, names, overrides, batch, steps=40):
    dataset = make(task_name, files, names, overrides, batch)
    iterator = iter(dataset)
    for _ in range(5):
        next(iterator)
    start = time.perf_counter()
    for _ in range(steps):
        next(iterator)
    rate = steps * batch / (time.perf_counter() - start)
    return rate


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="augment_repro")
    parser.add_argument("--batches", type=int, default=12)
    parser.add_argument("--throughput", action="store_true")
    parser.add_argument("--per-option", action="store_true",
                        help="also check each classification option on its own")
    args = parser.parse_args(argv)
    ok = True
    with tempfile.TemporaryDirectory() as tmp:
        cls_files, cls_names = classification_files(tmp)
        det_files, det_names = detection_files(tmp)
        cases = [("classification, every option", "classification", cls_files, cls_names,
                  ["data.image_size=16", "model.image_size=16", *EVERYTHING], 16),
                 ("detection box augmentation + mosaic", "detection", det_files, det_names,
                  ["model.image_size=32", *DETECTION], 8)]
        for label, task_name, files, names, overrides, batch in cases:
            first = batches(make(task_name, files, names, overrides, batch), args.batches)
            second = batches(make(task_name, files, names, overrides, batch), args.batches)
            ok &= compare(f"{label}: same seed", first, second)
            other = batches(make(task_name, files, names, overrides + ["augment.seed=12"], batch),
                            args.batches)
            compare(f"{label}: augment.seed 11 vs 12 (should differ)", first, other)
            if args.throughput:
                rate = throughput(task_name, files, names, overrides, batch)
                print(f"{label}: input pipeline {rate:.0f} images/s")
        if args.per_option:
            base = ["data.image_size=16", "model.image_size=16", "augment.horizontal_flip=false"]
            for option in EVERYTHING:
                first = batches(make("classification", cls_files, cls_names, base + [option], 16), 6)
                second = batches(make("classification", cls_files, cls_names, base + [option], 16), 6)
                compare(f"  only {option}", first, second)
        if args.throughput:
            shapes = ["data.image_size=48", "model.image_size=48", "augment.horizontal_flip=true",
                      "augment.vertical_flip=true", "augment.rotation=0.5"]
            rate = throughput("classification", cls_files, cls_names, shapes, 32, steps=60)
            print(f"demo recipe augmentation (flips + rotation, 48px, batch 32): {rate:.0f} images/s")
    print("REPRODUCIBLE" if ok else "NOT REPRODUCIBLE")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
