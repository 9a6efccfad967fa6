"""Class-imbalance benchmark: scikit-learn's digits (1,797 real images) with the training images
of some classes cut to 2%, the eval split left whole (30% of every class, held out before the
cut), trained the same way (same model, epochs, seed) with each recipe:

    none | train.class_weights=balanced | train.class_weights=effective_number |
    train.oversample=true | train.loss=focal | focal + effective_number

and scored on the eval split: macro F1 (the target: the best recipe >= 5 points over none),
balanced accuracy, accuracy and the mean recall of the cut classes, side by side.

    python -m benchmarks.imbalance_bench                 # 5 classes cut, 12 epochs
    python -m benchmarks.imbalance_bench --epochs 2      # a smoke run

SMOTE (oversampling in feature space) is not here: imbalanced-learn is not in the lock.
"""
from __future__ import annotations

import argparse
import os
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401

RECIPES = {
    "none": [],
    "class weights (balanced)": ["train.class_weights=balanced"],
    "class weights (effective number)": ["train.class_weights=effective_number"],
    "oversampling": ["train.oversample=true"],
    "focal loss": ["train.loss=focal"],
    "focal + effective number": ["train.loss=focal", "train.class_weights=effective_number"],
}


def make_imbalanced_digits(root: Path, cut: list, keep: float, eval_share: float, seed: int):
    """``root/{train,eval}/<digit>/<row>.png``: eval_share of every class held out first, then
    the training images of the ``cut`` classes reduced to ``keep`` of theirs (at least 2)."""
    from visionpipe.datasets.digits import write_digits_folder

    every = root / "every"
    write_digits_folder(every, 1797, 32, seed=seed)
    rng = random.Random(seed)
    counts = {}
    for class_dir in sorted(every.iterdir()):
        files = sorted(class_dir.iterdir())
        rng.shuffle(files)
        n_eval = round(len(files) * eval_share)
        train = files[n_eval:]
        if class_dir.name in cut:
            train = train[:max(2, round(len(train) * keep))]
        for split, chosen in (("eval", files[:n_eval]), ("train", train)):
            target = root / "data" / split / class_dir.name
            target.mkdir(parents=True)
            for f in chosen:
                shutil.copy(f, target / f.name)
        counts[class_dir.name] = (len(train), n_eval)
    return root / "data", counts


def run_recipe(data_dir: Path, out: Path, overrides, epochs: int):
    from visionpipe.components.image_example_gen.ingest import ingest
    from visionpipe.core.config import load_config
    import numpy as np

    from visionpipe.core.examples import read_class_names, split_files
    from visionpipe.models import data, training
    from visionpipe.tasks import get_task

    config = load_config(REPO / "configs" / "digits.yaml", overrides=[
        "data.source=folder", f"data.path={data_dir}", "data.use_source_splits=true",
        "data.min_examples_per_class=2", f"train.epochs={epochs}", "train.batch_size=32",
        f"runner.output_dir={out}", *overrides])
    examples = out / "examples_done"
    if not examples.exists():
        result = ingest(config, str(out / "ingest"))
        examples.write_text(result.examples_uri)
    uri = examples.read_text()
    names = read_class_names(uri)
    task = get_task(config, names)
    start = time.process_time()
    trained = training.train(config, task, split_files(uri, "train"), split_files(uri, "eval"),
                             str(out / f"logs_{len(os.listdir(out))}"))
    cpu = time.process_time() - start
    images, targets = [], []
    for x, y in data.make_dataset(split_files(uri, "eval"), task, 64, training=False):
        images.append(x.numpy())
        targets.append(y.numpy())
    probabilities = trained.model.predict(np.concatenate(images), verbose=0)
    return task.metrics_from_predictions(probabilities, np.concatenate(targets)), cpu


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--cut", default="0,1,2,3,4", help="digits whose training images are cut")
    parser.add_argument("--keep", type=float, default=0.02)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args(argv)
    cut = args.cut.split(",")
    tmp = Path(tempfile.mkdtemp(prefix="imbalance_"))
    data_dir, counts = make_imbalanced_digits(tmp, cut, args.keep, 0.3, args.seed)
    shown = ", ".join(f"{c}: {n_train}/{n_eval}" for c, (n_train, n_eval) in counts.items())
    print(f"digits, train/eval images per class ({', '.join(cut)} cut to {args.keep:.0%} of "
          f"their training images): {shown}")
    rows, shared = [], tmp / "shared"
    shared.mkdir()
    for name, overrides in RECIPES.items():
        metrics, cpu = run_recipe(data_dir, shared, overrides, args.epochs)
        cut_recall = sum(metrics.get(f"recall/{c}", 0.0) for c in cut) / len(cut)
        rows.append((name, metrics["macro_f1"], metrics["balanced_accuracy"],
                     metrics["accuracy"], cut_recall, cpu))
    base = rows[0][1]
    print(f"{'recipe':34s} {'macro F1':>9s} {'vs none':>8s} {'bal. acc':>9s} {'accuracy':>9s} "
          f"{'cut-class recall':>17s} {'train CPU s':>12s}")
    for name, f1, balanced, accuracy, cut_recall, cpu in rows:
        print(f"{name:34s} {f1:9.3f} {100 * (f1 - base):+7.1f}p {balanced:9.3f} {accuracy:9.3f} "
              f"{cut_recall:17.3f} {cpu:12.0f}")
    best = max(rows[1:], key=lambda r: r[1])
    print(f"best recipe: {best[0]}, macro F1 {best[1]:.3f} = {100 * (best[1] - base):+.1f} points "
          f"over none (target: >= +5)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
