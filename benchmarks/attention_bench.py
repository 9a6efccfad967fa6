"""Attention ablation: the small CNN with no attention, squeeze-and-excitation and CBAM after
every stage (``model.attention``), trained alike (same generated shapes, epochs, seed) and
scored on the held-out split: accuracy, parameters, training CPU seconds, Keras batch-1
latency and the int8 TFLite file's size and accuracy.

    python -m benchmarks.attention_bench                  # 1,600 shapes at 32 px, 10 epochs
    python -m benchmarks.attention_bench --epochs 1       # a smoke run
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401


def _examples(tmp: Path, images: int, size: int):
    from visionpipe.components.image_example_gen.ingest import ingest
    from visionpipe.core.config import load_config
    from visionpipe.datasets import shapes

    folder = tmp / "shapes"
    shapes.write_classification_folder(folder, images, size, seed=7)
    config = load_config(overrides=["data.source=folder", f"data.path={folder}",
                                    f"runner.output_dir={tmp}"])
    result = ingest(config, str(tmp / "ingest"))
    return result.examples_uri, result.class_names


def _batches(files, task):
    from visionpipe.models import data

    xs, ys = [], []
    for x, y in data.make_dataset(files, task, 64, training=False):
        xs.append(x.numpy())
        ys.append(y.numpy())
    return np.concatenate(xs), np.concatenate(ys)


def run(attention: str, uri: str, names, size: int, epochs: int, tmp: Path):
    from visionpipe.core.config import load_config
    from visionpipe.core.examples import split_files
    from visionpipe.models import training
    from visionpipe.runtime import tflite_convert
    from visionpipe.runtime.tflite_runtime import TFLiteModel
    from visionpipe.tasks import get_task

    config = load_config(overrides=[
        f"model.image_size={size}", "model.width=12", f"model.attention={attention}",
        f"train.epochs={epochs}", "train.batch_size=32", "augment.vertical_flip=true",
        f"runner.output_dir={tmp}"])
    task = get_task(config, names)
    start = time.process_time()
    result = training.train(config, task, split_files(uri, "train"), split_files(uri, "eval"),
                            str(tmp / f"logs_{attention}"))
    cpu = time.process_time() - start
    images, targets = _batches(split_files(uri, "eval"), task)
    model = result.model
    accuracy = float(np.mean(np.argmax(model.predict(images, verbose=0), -1) == np.argmax(targets, -1)))
    one = images[:1]
    model(one, training=False)
    start = time.perf_counter()
    for _ in range(50):
        model(one, training=False)
    latency = (time.perf_counter() - start) / 50 * 1000
    train_images, _ = _batches(split_files(uri, "train"), task)
    content = tflite_convert.convert(model, "int8",
                                     tflite_convert.representative_dataset(train_images, 100))
    int8 = TFLiteModel(model_content=content)
    int8_accuracy = float(np.mean(np.argmax(int8.scores(images), -1) == np.argmax(targets, -1)))
    return accuracy, model.count_params(), cpu, latency, len(content), int8_accuracy


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1600)
    parser.add_argument("--size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args(argv)
    tmp = Path(tempfile.mkdtemp(prefix="attention_"))
    uri, names = _examples(tmp, args.images, args.size)
    print(f"generated shapes, {args.images} images at {args.size} px ({len(names)} classes), "
          f"small_cnn width 12, {args.epochs} epochs")
    print(f"{'attention':10s} {'accuracy':>9s} {'params':>8s} {'train CPU s':>12s} "
          f"{'batch-1 ms':>11s} {'int8 KB':>8s} {'int8 acc':>9s}")
    for attention in ("none", "se", "cbam"):
        accuracy, params, cpu, latency, size, int8_accuracy = run(
            attention, uri, names, args.size, args.epochs, tmp)
        print(f"{attention:10s} {accuracy:9.3f} {params:8d} {cpu:12.0f} {latency:11.2f} "
              f"{size / 1024:8.1f} {int8_accuracy:9.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
