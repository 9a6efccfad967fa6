"""Optimization benchmark on the shapes data and on scikit-learn's digits.

Prints, per dataset (targets from the optimization issue):
  int8 / float32 TFLite: size (target <= 0.3), accuracy drop (<= 1 point), latency (<= 0.6)
  50% pruning + int8: gzipped size / float32 gzipped (<= 0.2), accuracy drop (<= 1 point)
  distilled student (<= 1/4 of the teacher's parameters): share of the accuracy gap between
  the student trained alone and the teacher that distillation recovers (>= 50%)

Distillation is the pipeline's: the student starts from evenly spaced channels of the
teacher's weights (``optimize.student_init=teacher``, weight selection) and learns from the
teacher's tempered outputs plus the labels. To show what each part does, the student trained
alone is also run from the same teacher-selected weights (no distillation loss).

The distillation comparison is measured on a held-out test set that nothing was trained or
tuned on (shapes: 4,000 images generated with another seed; digits: the 597 images the
training and evaluation images leave), over several seeds (mean ± std): per seed the student
alone and the distilled student share architecture, initial weights, data, shuffling,
augmentation, epochs and learning-rate schedule; when distillation blends its inputs with
MixUp, a student alone trained with the same MixUp is reported too.

Everything goes through the production code: images are written as PNG files by
``visionpipe.datasets``, read with the shared preprocessing, the models are the
classification task's, and every number comes from ``visionpipe.optimize``'s report
(TFLite interpreter, XNNPACK, one thread, median batch-1 latency).
"""
from __future__ import annotations

import argparse
import copy
import dataclasses
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

from visionpipe.models import preprocessing  # noqa: E402
from visionpipe.models.data import augment_batches  # noqa: E402
from visionpipe.tasks import get_task  # noqa: E402
from visionpipe.runtime import tflite_convert  # noqa: E402
from visionpipe.optimize.optimizer import OptimizationInputs, TaskHooks, optimize  # noqa: E402
from visionpipe.optimize.weight_selection import initialize_from_teacher  # noqa: E402
from visionpipe.core.config import PipelineConfig  # noqa: E402


def _load_folder(written: List[Tuple[str, str]], image_size: int):
    classes = sorted({name for _, name in written})
    images = np.stack([preprocessing.preprocess_image(tf.io.read_file(path), image_size).numpy()
                       for path, _ in written])
    labels = np.array([classes.index(name) for _, name in written])
    return images, labels, classes


def digits_data(root: str, image_size: int, test_images: int):
    """1,200 images for training and evaluation (as before), and the held-out test set: the
    digits the first 1,200 leave (scikit-learn has 1,797, so at most 597)."""
    from visionpipe.datasets.digits import write_digits_folder

    images, labels, classes = _load_folder(
        write_digits_folder(os.path.join(root, "digits"), num_images=1797, image_size=image_size,
                            seed=7), image_size)
    test = slice(1200, 1200 + test_images)
    return (images[:1200], labels[:1200], classes), (images[test], labels[test])


def shapes_data(root: str, image_size: int, test_images: int):
    """2,000 images for training and evaluation (seed 7), and a test set generated with
    another seed (1007): fresh scenes that no model or choice of recipe has seen."""
    from visionpipe.datasets.shapes import write_classification_folder

    train = _load_folder(write_classification_folder(os.path.join(root, "shapes"), num_images=2000,
                                                     image_size=image_size, seed=7), image_size)
    test_images, test_labels, test_classes = _load_folder(write_classification_folder(
        os.path.join(root, "shapes_test"), num_images=test_images, image_size=image_size,
        seed=1007), image_size)
    assert test_classes == train[2], (test_classes, train[2])
    return train, (test_images, test_labels)


@dataclasses.dataclass
class Recipe:
    image_size: int
    epochs: int
    width: int  # teacher small_cnn width
    teacher_se: bool
    student_width: int
    test_images: int
    augment: Tuple[str, ...] = ()


# Per dataset: the teacher and student, epochs (teacher, student alone and distilled student
# alike), the test-set size and the augmentation (the shapes recipe of
# configs/classification.yaml: rotation-invariant shapes on photos need rotation and flips).
DATASETS = {
    # width 4 (0.065x the parameters): at width 7 (0.19x) the student alone already matched
    # the teacher on the validation split, leaving no gap to measure
    "digits": Recipe(16, 8, width=16, teacher_se=False, student_width=4, test_images=597),
    "shapes": Recipe(48, 25, width=24, teacher_se=True, student_width=6, test_images=4000,
                     augment=("augment.horizontal_flip=true", "augment.vertical_flip=true",
                              "augment.rotation=0.5")),
}
LEARNING_RATE = 3e-3
PRUNE_EPOCHS = 4  # the fine-tune that pruning ramps up in (two thirds) and recovers in


def _config(image_size: int, width: int, epochs: int, student_width: int = 7,
            augment_overrides=(), squeeze_excite: bool = False, dropout: float = 0.0,
            distill_overrides=()) -> PipelineConfig:
    from visionpipe.core.config import load_config

    config = load_config(overrides=["augment.horizontal_flip=false", *augment_overrides,
                                    *distill_overrides])
    config.model.squeeze_excite = squeeze_excite
    config.model.image_size = image_size
    config.model.width = width
    config.model.dropout = dropout
    config.optimize.enabled = True
    config.optimize.prune = True
    config.optimize.prune_epochs = PRUNE_EPOCHS
    config.optimize.distill = True
    config.optimize.student_width = student_width  # conv parameters scale with width^2
    config.optimize.distill_epochs = epochs
    config.optimize.distill_learning_rate = LEARNING_RATE
    config.optimize.qat = "off"
    config.optimize.latency_runs = 100
    return config.validate()


def _mean_std(values) -> Tuple[float, float]:
    values = np.asarray(values, dtype=float)
    return float(values.mean()), float(values.std(ddof=1)) if len(values) > 1 else 0.0


def _recovered(teacher: float, alone: float, distilled: float) -> float:
    gap = teacher - alone
    return (distilled - alone) / gap if gap > 0 else float("nan")


def run_dataset(name: str, data, test, recipe: Recipe, out_dir: str, seeds: int = 3,
                dropout: float = 0.0, distill_overrides=()) -> Dict:
    """The teacher is trained once. Then, per seed, the student alone and the distilled
    student (same architecture, initial weights, data, shuffling, augmentation, epochs and
    learning-rate schedule) and, when distillation blends inputs with MixUp, the student
    alone with the same MixUp as augmentation. Every accuracy is measured on ``test``."""
    from visionpipe.models.training import learning_rate

    images, labels, classes = data
    epochs = recipe.epochs
    config = _config(recipe.image_size, recipe.width, epochs, recipe.student_width, recipe.augment,
                     recipe.teacher_se, dropout, distill_overrides)
    task = get_task(config, classes)
    rng = np.random.default_rng(0)
    order = rng.permutation(len(images))
    split = int(0.75 * len(images))
    train_idx = order[:split]  # order[split:]: validation, for choosing recipes; unused here
    onehot = np.eye(len(classes), dtype=np.float32)

    def train_batches(seed: int) -> tf.data.Dataset:  # shuffled, not augmented
        return (tf.data.Dataset.from_tensor_slices((images[train_idx], onehot[labels[train_idx]]))
                .shuffle(len(train_idx), seed=seed).batch(32))

    def augmented(batches: tf.data.Dataset, augment_task) -> tf.data.Dataset:
        # the task's seeded augmentation, as the Trainer applies it, over one iterator for
        # all epochs (fit with steps_per_epoch), so the per-batch seeds keep counting
        return augment_batches(batches.repeat(), augment_task, seed=0).prefetch(
            tf.data.AUTOTUNE)

    test_batches = tf.data.Dataset.from_tensor_slices(
        (test[0], onehot[test[1]])).batch(64).cache()
    steps = int(np.ceil(len(train_idx) / 32))

    def schedule():  # cosine decay, as the Trainer and distill() use
        return learning_rate(config.train, LEARNING_RATE, epochs, steps)

    def test_accuracy(model) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            path = tflite_convert.write(os.path.join(tmp, "model.tflite"),
                                        tflite_convert.convert(model, "float32"))
            return task.evaluate_tflite(path, test_batches)["accuracy"]

    start = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    teacher = task.build_model()
    task.compile_model(teacher, schedule())
    teacher.fit(augmented(train_batches(0), task), epochs=epochs, steps_per_epoch=steps, verbose=0)
    teacher_seconds = time.perf_counter() - start

    mixup = config.optimize.distill_mixup_alpha
    student_task = get_task(_config(recipe.image_size, recipe.student_width, epochs,
                                    recipe.student_width, recipe.augment, dropout=dropout), classes)
    mixup_task = get_task(_config(recipe.image_size, recipe.student_width, epochs,
                                  recipe.student_width,
                                  (*recipe.augment, f"augment.mixup_alpha={mixup}"),
                                  dropout=dropout), classes) if mixup else None

    def train_alone(seed: int, augment_task, from_teacher=None) -> tf.keras.Model:
        tf.keras.utils.set_random_seed(100 * seed + 1)
        model = student_task.build_model()
        if from_teacher is not None:
            initialize_from_teacher(from_teacher, model)
        student_task.compile_model(model, schedule())
        model.fit(augmented(train_batches(seed), augment_task), epochs=epochs,
                  steps_per_epoch=steps, verbose=0)
        return model

    teacher_init = config.optimize.student_init == "teacher"
    runs, report, student_seconds = [], None, []
    for seed in range(seeds):
        run = {"seed": seed}
        run["alone"] = test_accuracy(train_alone(seed, student_task))
        if teacher_init:  # ablation: the teacher's selected weights, trained on labels only
            run["alone_teacher_init"] = test_accuracy(
                train_alone(seed, student_task, from_teacher=teacher))
        if mixup_task is not None:
            run["alone_mixup"] = test_accuracy(train_alone(seed, mixup_task))

        def build_student(seed=seed):
            tf.keras.utils.set_random_seed(100 * seed + 1)  # the alone runs' initial weights
            return student_task.build_model()

        hooks = TaskHooks(evaluate_tflite=lambda path: task.evaluate_tflite(path, test_batches),
                          gate_metric=task.gate_metric, compile_model=task.compile_model,
                          tflite_metadata_kind=task.tflite_metadata_kind,
                          build_student=build_student,
                          augment_batches=lambda batches: augment_batches(
                              batches, task, seed=0))

        def run_optimizer(step_config, subdir: str, seed=seed):
            # fresh batches per call: a step that iterates them (pruning) advances their
            # shuffle seeds, and the distilled student must see the alone student's order
            inputs = OptimizationInputs(model=teacher, train_batches=train_batches(seed),
                                        calibration_images=images[train_idx], labels=classes)
            return optimize(inputs, hooks, step_config, os.path.join(out_dir, subdir))

        if seed == 0:  # quantization and pruning are measured once
            compression = copy.deepcopy(config.optimize)
            compression.distill = False
            report = run_optimizer(compression, "compression")
        distill_config = copy.deepcopy(config.optimize)
        distill_config.ptq_modes, distill_config.prune = [], False
        if seed > 0:  # the first seed's student is timed with the other files
            distill_config.latency_runs = 1
        tick = time.perf_counter()
        seed_report = run_optimizer(distill_config, f"seed{seed}")
        student_seconds.append(time.perf_counter() - tick)
        if seed == 0:
            report.artifacts.append(seed_report.get("student"))
            report.finalize()
            report.evaluated_on = f"held-out test set, {len(test[0])} images"
        run["distilled"] = seed_report.get("student").metric
        run["teacher"] = seed_report.get("float32").metric
        runs.append(run)
        print(f"  {name} seed {seed}: {json.dumps(run)}", flush=True)
    seconds = time.perf_counter() - start

    teacher_accuracy = runs[0]["teacher"]
    alone, distilled = [r["alone"] for r in runs], [r["distilled"] for r in runs]
    result = {
        "dataset": name, "train_images": len(train_idx), "test_images": len(test[0]),
        "image_size": recipe.image_size, "epochs": epochs, "seeds": seeds,
        "seconds": round(seconds, 1), "teacher_seconds": round(teacher_seconds, 1),
        "runs": runs, "teacher_accuracy": teacher_accuracy,
        "student_alone": _mean_std(alone), "student_distilled": _mean_std(distilled),
        # the gap recovered by the mean distilled student, and per seed (paired runs)
        "recovered": _recovered(teacher_accuracy, float(np.mean(alone)), float(np.mean(distilled))),
        "recovered_per_seed": _mean_std([_recovered(teacher_accuracy, r["alone"], r["distilled"])
                                         for r in runs]),
    }
    if teacher_init:
        alone_init = [r["alone_teacher_init"] for r in runs]
        result["student_alone_teacher_init"] = _mean_std(alone_init)
        result["recovered_by_distillation_loss"] = _recovered(
            teacher_accuracy, float(np.mean(alone_init)), float(np.mean(distilled)))
    if mixup_task is not None:
        alone_mixup = [r["alone_mixup"] for r in runs]
        result["student_alone_mixup"] = _mean_std(alone_mixup)
        result["recovered_vs_alone_mixup"] = _recovered(
            teacher_accuracy, float(np.mean(alone_mixup)), float(np.mean(distilled)))
    base, int8 = report.get("float32"), report.get("int8")
    pruned_int8, student = report.get("pruned_int8"), report.get("student")
    result.update({
        "float32_accuracy": base.metric, "float32_latency_ms": base.latency_ms,
        "int8_size_ratio": int8.size_ratio, "int8_accuracy_drop": int8.metric_drop,
        "int8_latency_ratio": int8.latency_ratio, "int8_float_layers": int8.notes.get("float_layers"),
        "pruned_int8_gzip_ratio": pruned_int8.gzip_ratio,
        "pruned_int8_accuracy_drop": pruned_int8.metric_drop,
        "pruned_sparsity": pruned_int8.notes["overall_sparsity"],
        "student_parameter_ratio": student.notes["parameter_ratio"],
        "distill_settings": {k: student.notes[k] for k in
                             ("student_init", "temperature", "alpha", "mixup_alpha", "epochs",
                              "augmented")},
        "blessed_files": report.blessed_files, "report_markdown": report.to_markdown(),
    })
    return result


def _pm(mean_std) -> str:
    return f"{mean_std[0]:.4f} ± {mean_std[1]:.4f}"


def _share(value: float) -> str:
    return f"{100 * value:.0f}%" if np.isfinite(value) else "n/a (the student alone matches the teacher)"


def _print(result: Dict) -> None:
    r = result
    print(f"\n== {r['dataset']}: {r['train_images']} train images, {r['test_images']} held-out "
          f"test images, {r['image_size']}x{r['image_size']}, {r['epochs']} epochs, "
          f"{r['seeds']} seeds, {r['seconds']} s")
    print(f"int8 / float32 TFLite: size {r['int8_size_ratio']:.3f} (target <= 0.3), "
          f"accuracy drop {100 * r['int8_accuracy_drop']:+.2f} points (<= 1), "
          f"latency {r['int8_latency_ratio']:.3f} (<= 0.6); float layers {r['int8_float_layers']}")
    print(f"50% pruning + int8: gzip size {r['pruned_int8_gzip_ratio']:.3f} of float32 (<= 0.2), "
          f"accuracy drop {100 * r['pruned_int8_accuracy_drop']:+.2f} points (<= 1), "
          f"sparsity {r['pruned_sparsity']:.3f}")
    print(f"distilled student ({r['student_parameter_ratio']:.3f} of the teacher's parameters; "
          f"{r['distill_settings']}), test accuracy, mean ± std over seeds:")
    print(f"  teacher {r['teacher_accuracy']:.4f}, student alone {_pm(r['student_alone'])}, "
          f"distilled {_pm(r['student_distilled'])}")
    print(f"  gap recovered {_share(r['recovered'])} (>= 50%); per seed "
          f"{100 * r['recovered_per_seed'][0]:.0f}% ± {100 * r['recovered_per_seed'][1]:.0f}%")
    if "student_alone_teacher_init" in r:
        print(f"  ablation: student alone from the teacher-selected weights "
              f"{_pm(r['student_alone_teacher_init'])}; the distillation loss on top of them "
              f"recovers {_share(r['recovered_by_distillation_loss'])} of the gap left")
    if "student_alone_mixup" in r:
        print(f"  student alone with the same MixUp as augmentation {_pm(r['student_alone_mixup'])}"
              f" -> gap recovered against it {_share(r['recovered_vs_alone_mixup'])}")
    print(r["report_markdown"])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", default="digits,shapes")
    parser.add_argument("--epochs", type=int, default=0, help="0: the dataset's default")
    parser.add_argument("--width", type=int, default=0, help="teacher small_cnn width; 0: the dataset's")
    parser.add_argument("--student-width", type=int, default=0,
                        help="student small_cnn width; 0: the dataset's (under 1/4 of the parameters)")
    parser.add_argument("--teacher-se", choices=("auto", "on", "off"), default="auto",
                        help="squeeze-and-excitation in the teacher; auto: the dataset's")
    parser.add_argument("--dropout", type=float, default=0.0, help="head dropout of both models")
    parser.add_argument("--seeds", type=int, default=5,
                        help="student-alone / distilled runs, each pair with its own seed")
    parser.add_argument("--test-images", type=int, default=0, help="0: the dataset's default")
    parser.add_argument("--set", action="append", default=[], metavar="optimize.KEY=VALUE",
                        help="a config override for the distillation (repeatable), e.g. "
                             "optimize.distill_mixup_alpha=0")
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as root:
        for name in args.datasets.split(","):
            if name not in DATASETS:
                raise SystemExit(f"unknown dataset {name!r}; choose from {sorted(DATASETS)}")
            recipe = dataclasses.replace(
                DATASETS[name], epochs=args.epochs or DATASETS[name].epochs,
                width=args.width or DATASETS[name].width,
                student_width=args.student_width or DATASETS[name].student_width,
                teacher_se={"on": True, "off": False}.get(args.teacher_se, DATASETS[name].teacher_se),
                test_images=args.test_images or DATASETS[name].test_images)
            load = digits_data if name == "digits" else shapes_data
            data, test = load(root, recipe.image_size, recipe.test_images)
            result = run_dataset(name, data, test, recipe, os.path.join(root, f"optimized_{name}"),
                                 args.seeds, args.dropout, tuple(args.set))
            _print(result)
            results.append(result)
    if args.json:
        with open(args.json, "w") as f:
            json.dump([{k: v for k, v in r.items() if k != "report_markdown"} for r in results],
                      f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
