"""Optimization benchmark on the shapes data and on scikit-learn's digits.

Prints, per dataset (targets from the optimization issue):
  int8 / float32 TFLite: size (target <= 0.3), accuracy drop (<= 1 point), latency (<= 0.6)
  50% pruning + int8: gzipped size / float32 gzipped (<= 0.2), accuracy drop (<= 1 point)
  distilled student (<= 1/4 of the teacher's parameters): share of the accuracy gap between
  the student trained alone and the teacher that distillation recovers (>= 50%)

Everything goes through the production code: images are written as PNG files by
``visionpipe.datasets``, read with the shared preprocessing, the models are the
classification task's, and every number comes from ``visionpipe.optimize``'s report
(TFLite interpreter, XNNPACK, one thread, median batch-1 latency).
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from typing import Dict, List, Tuple

os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

import visionpipe  # noqa: E402,F401
import tensorflow as tf  # noqa: E402

from visionpipe.models import data, preprocessing  # noqa: E402
from visionpipe.models.tasks import get_task  # noqa: E402
from visionpipe.optimize import tflite_convert  # noqa: E402
from visionpipe.optimize.optimizer import OptimizationInputs, TaskHooks, optimize  # noqa: E402
from visionpipe.pipeline.config import PipelineConfig  # noqa: E402


def _load_folder(written: List[Tuple[str, str]], image_size: int):
    classes = sorted({name for _, name in written})
    images = np.stack([preprocessing.preprocess_image(tf.io.read_file(path), image_size).numpy()
                       for path, _ in written])
    labels = np.array([classes.index(name) for _, name in written])
    return images, labels, classes


def digits_data(root: str, image_size: int):
    from visionpipe.datasets.digits import write_digits_folder

    return _load_folder(write_digits_folder(os.path.join(root, "digits"), num_images=1200,
                                            image_size=image_size, seed=7), image_size)


def shapes_data(root: str, image_size: int):
    from visionpipe.datasets.shapes import write_classification_folder

    return _load_folder(write_classification_folder(os.path.join(root, "shapes"), num_images=2000,
                                                    image_size=image_size, seed=7), image_size)


# Per dataset: image size, epochs, augmentation overrides (the shapes recipe of
# configs/classification.yaml: rotation-invariant shapes on photos need rotation and flips).
DATASETS = {"digits": (16, 8, []),
            "shapes": (48, 25, ["augment.horizontal_flip=true", "augment.vertical_flip=true",
                                "augment.rotation=0.5"])}
LEARNING_RATE = 3e-3


def _config(image_size: int, width: int, epochs: int, student_width: int = 7,
            augment_overrides=(), squeeze_excite: bool = False, dropout: float = 0.0) -> PipelineConfig:
    from visionpipe.pipeline.config import load_config

    config = load_config(overrides=["augment.horizontal_flip=false", *augment_overrides])
    config.model.squeeze_excite = squeeze_excite
    config.model.image_size = image_size
    config.model.width = width
    config.model.dropout = dropout
    config.optimize.enabled = True
    config.optimize.prune = True
    config.optimize.prune_epochs = 2
    config.optimize.distill = True
    config.optimize.student_width = student_width  # conv parameters scale with width^2
    config.optimize.distill_epochs = epochs
    config.optimize.distill_learning_rate = LEARNING_RATE
    config.optimize.qat = "off"
    config.optimize.latency_runs = 100
    return config.validate()


def run_dataset(name: str, images, labels, classes, image_size: int, width: int, epochs: int,
                student_width: int, out_dir: str, augment_overrides=(), teacher_se: bool = False,
                dropout: float = 0.0) -> Dict:
    from visionpipe.models.training import learning_rate

    config = _config(image_size, width, epochs, student_width, augment_overrides, teacher_se, dropout)
    task = get_task(config, classes)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    split = int(0.75 * len(images))
    train_idx, eval_idx = order[:split], order[split:]
    onehot = np.eye(len(classes), dtype=np.float32)[labels]

    def batches(idx, shuffle):
        ds = tf.data.Dataset.from_tensor_slices((images[idx], onehot[idx]))
        if shuffle:
            ds = ds.shuffle(len(idx), seed=0)
        ds = ds.batch(32)
        if shuffle:  # training batches get the task's (seeded) augmentation
            ds = data.augment_batches(ds, task, seed=0)
        return ds.prefetch(tf.data.AUTOTUNE)

    train, evaluation = batches(train_idx, True), batches(eval_idx, False)
    steps = int(np.ceil(len(train_idx) / 32))

    def schedule():  # cosine decay, as the Trainer uses
        return learning_rate(config.train, LEARNING_RATE, epochs, steps)

    tf.keras.utils.set_random_seed(0)
    start = time.perf_counter()
    teacher = task.build_model()
    task.compile_model(teacher, schedule())
    teacher.fit(train, epochs=epochs, verbose=0)

    student_config = _config(image_size, student_width, epochs, student_width, augment_overrides,
                             dropout=dropout)
    student_task = get_task(student_config, classes)
    tf.keras.utils.set_random_seed(1)
    alone = student_task.build_model()
    student_task.compile_model(alone, schedule())
    alone.fit(train, epochs=epochs, verbose=0)
    with tempfile.TemporaryDirectory() as tmp:
        alone_path = tflite_convert.write(os.path.join(tmp, "alone.tflite"),
                                          tflite_convert.convert(alone, "float32"))
        alone_accuracy = task.evaluate_tflite(alone_path, evaluation)["accuracy"]

    def build_student():
        tf.keras.utils.set_random_seed(1)
        return student_task.build_model()

    hooks = TaskHooks(evaluate_tflite=lambda path: task.evaluate_tflite(path, evaluation),
                      gate_metric=task.gate_metric, compile_model=task.compile_model,
                      build_student=build_student)
    inputs = OptimizationInputs(model=teacher, train_batches=train,
                                calibration_images=images[train_idx], labels=classes)
    report = optimize(inputs, hooks, config.optimize, out_dir)
    seconds = time.perf_counter() - start

    base, int8 = report.get("float32"), report.get("int8")
    pruned_int8, student = report.get("pruned_int8"), report.get("student")
    gap = base.metric - alone_accuracy
    recovery = (student.metric - alone_accuracy) / gap if gap > 0 else float("nan")
    return {
        "dataset": name, "train_images": len(train_idx), "eval_images": len(eval_idx),
        "image_size": image_size, "seconds": round(seconds, 1),
        "float32_accuracy": base.metric, "float32_latency_ms": base.latency_ms,
        "int8_size_ratio": int8.size_ratio, "int8_accuracy_drop": int8.metric_drop,
        "int8_latency_ratio": int8.latency_ratio, "int8_float_layers": int8.notes.get("float_layers"),
        "pruned_int8_gzip_ratio": pruned_int8.gzip_ratio,
        "pruned_int8_accuracy_drop": pruned_int8.metric_drop,
        "pruned_sparsity": pruned_int8.notes["overall_sparsity"],
        "student_parameter_ratio": student.notes["parameter_ratio"],
        "teacher_accuracy": base.metric, "student_alone_accuracy": alone_accuracy,
        "student_distilled_accuracy": student.metric, "distillation_gap_recovery": recovery,
        "blessed_files": report.blessed_files, "report_markdown": report.to_markdown(),
    }


def _print(result: Dict) -> None:
    r = result
    print(f"\n== {r['dataset']}: {r['train_images']} train / {r['eval_images']} eval images, "
          f"{r['image_size']}x{r['image_size']}, {r['seconds']} s")
    print(f"int8 / float32 TFLite: size {r['int8_size_ratio']:.3f} (target <= 0.3), "
          f"accuracy drop {100 * r['int8_accuracy_drop']:+.2f} points (<= 1), "
          f"latency {r['int8_latency_ratio']:.3f} (<= 0.6); float layers {r['int8_float_layers']}")
    print(f"50% pruning + int8: gzip size {r['pruned_int8_gzip_ratio']:.3f} of float32 (<= 0.2), "
          f"accuracy drop {100 * r['pruned_int8_accuracy_drop']:+.2f} points (<= 1), "
          f"sparsity {r['pruned_sparsity']:.3f}")
    recovery = r["distillation_gap_recovery"]
    recovered = (f"{100 * recovery:.0f}%" if np.isfinite(recovery)
                 else "n/a: the student alone is already as accurate as the teacher")
    print(f"distilled student ({r['student_parameter_ratio']:.3f} of the teacher's parameters): "
          f"teacher {r['teacher_accuracy']:.4f}, alone {r['student_alone_accuracy']:.4f}, "
          f"distilled {r['student_distilled_accuracy']:.4f} -> gap recovered {recovered} (>= 50%)")
    print(r["report_markdown"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,shapes")
    parser.add_argument("--epochs", type=int, default=0, help="0: the dataset's default")
    parser.add_argument("--width", type=int, default=16, help="teacher small_cnn width")
    parser.add_argument("--student-width", type=int, default=7,
                        help="student small_cnn width (7 vs 16: under 1/4 of the parameters)")
    parser.add_argument("--teacher-se", action="store_true",
                        help="squeeze-and-excitation in the teacher (the demo's model)")
    parser.add_argument("--dropout", type=float, default=0.0, help="head dropout of both models")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as root:
        for name in args.datasets.split(","):
            if name not in DATASETS:
                raise SystemExit(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
            size, epochs, augment_overrides = DATASETS[name]
            load = digits_data if name == "digits" else shapes_data
            images, labels, classes = load(root, size)
            result = run_dataset(name, images, labels, classes, size, args.width,
                                 args.epochs or epochs, args.student_width,
                                 os.path.join(root, f"optimized_{name}"), augment_overrides,
                                 args.teacher_se, args.dropout)
            _print(result)
            results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "report_markdown"} for r in results],
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
