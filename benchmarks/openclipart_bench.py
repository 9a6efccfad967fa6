"""openclipart segmentation benchmark: scenes of openclipart drawings on scikit-image textures
(visionpipe.datasets.openclipart; needs Debian's openclipart-png, `apt-get install -y
openclipart-png`), the configured U-Net trained briefly on the first 80% of the scenes and
scored on the last 20% (mIoU, Dice, pixel accuracy, IoU per class) beside two image-blind or
near-blind floors: the training pixels' majority class everywhere, and an Otsu threshold
(skimage.filters.threshold_otsu on the grey image; its smaller side is called the training
pixels' most frequent drawing class, the rest background).

    python -m benchmarks.openclipart_bench                   # 300 scenes at 128 px, 400 steps
    python -m benchmarks.openclipart_bench --images 40 --steps 10   # a smoke run
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401
import keras_cv  # noqa: E402,F401  (before tensorflow_model_optimization)
import tensorflow as tf  # noqa: E402

from benchmarks.segmentation_bench import print_comparison  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "openclipart_segmentation.yaml"


def otsu_baseline(task, eval_files, train_files):
    from skimage.filters import threshold_otsu

    from visionpipe.core import features as F
    from visionpipe.core.examples import records
    from visionpipe.models.preprocessing import decode_image
    from visionpipe.tasks.segmentation.task import decode_mask_png

    drawing_class = 1 + int(np.argmax(task.pixel_counts(train_files)[1:]))
    acc = task._accumulator()
    for record in records(eval_files):
        parsed = F.parse_single(record, [F.ENCODED, F.SEGMENTATION_MASK])
        grey = decode_image(parsed[F.ENCODED]).numpy().mean(-1)
        bright = grey > threshold_otsu(grey)
        foreground = bright if bright.mean() < 0.5 else ~bright
        acc.add(decode_mask_png(parsed[F.SEGMENTATION_MASK].numpy()),
                np.where(foreground, drawing_class, 0))
    return acc.metrics(task.class_names)


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--images", type=int, default=300, help="scenes written in all")
    parser.add_argument("--scene_size", type=int, default=128, help="pixels per side of a scene")
    parser.add_argument("--steps", type=int, default=400, help="training steps in all")
    parser.add_argument("--root", default=None, help="openclipart PNG root (default Debian's)")
    parser.add_argument("--keep", help="write the scenes here (kept) instead of a temporary folder")
    parser.add_argument("--json", help="write the numbers here too")
    parser.add_argument("overrides", nargs="*", default=[])
    args = parser.parse_args(argv)

    from benchmarks.segmentation_bench import build_examples, write_split
    from visionpipe.core.config import load_config
    from visionpipe.datasets import openclipart
    from visionpipe.models import export, training
    from visionpipe.tasks import get_task

    root = Path(args.root) if args.root else openclipart.DEBIAN_ROOT
    if not root.is_dir():
        # `make bench` runs every benchmark: without the Debian package this one says so and
        # skips; a --root that is not there is an error
        print(f"openclipart drawings not found at {root}: apt-get install -y openclipart-png"
              + ("" if args.root else " (benchmark skipped)"), file=sys.stderr)
        return 2 if args.root else 0
    start = time.time()
    drawings = openclipart.find_drawings(root)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        scenes = Path(args.keep) if args.keep else tmp / "scenes"
        names = openclipart.write_scenes(scenes, drawings, args.images, args.scene_size)
        generate_seconds = time.time() - start
        config = load_config(args.config, [f"data.path={scenes}", *args.overrides])
        if list(config.data.class_names) != names:
            raise SystemExit(f"{args.config}: data.class_names {list(config.data.class_names)} "
                             f"differ from the scenes' classes {names}")
        epochs = max(1, min(config.train.epochs, args.steps))
        config.train.epochs, config.train.steps_per_epoch = epochs, max(1, args.steps // epochs)
        config.validate()
        held_out = {f"{i:05d}" for i in range(args.images - args.images // 5, args.images)}
        splits, class_names = build_examples(config, held_out)
        train_files = write_split(splits["train"], tmp / "train.gz")
        eval_files = write_split(splits["eval"], tmp / "eval.gz")
        task = get_task(config, class_names)
        began = time.time()
        result = training.train(config, task, train_files, eval_files, log_dir=str(tmp / "logs"))
        train_seconds = time.time() - began
        export_dir = str(tmp / "export")
        export.export_saved_model(result.model, task, export_dir)
        model_metrics = task.evaluate_loaded(tf.saved_model.load(export_dir), eval_files)
        otsu = otsu_baseline(task, eval_files, train_files)
        trivial = task.trivial_metrics(eval_files, train_files)

    keys = ("miou", "dice", "pixel_accuracy")
    report = {
        "scenes": {"train": len(splits["train"]), "eval": len(splits["eval"]), "size": args.scene_size},
        "drawings": {k: len(v) for k, v in drawings.by_category.items()},
        "drawings_skipped": len(drawings.skipped),
        "steps": config.train.epochs * config.train.steps_per_epoch,
        "model_image_size": config.model.image_size,
        "generate_seconds": round(generate_seconds, 1), "train_seconds": round(train_seconds, 1),
        "model": {k: round(model_metrics[k], 4) for k in keys},
        "model_iou_per_class": {n: round(model_metrics[f"iou/{n}"], 4) for n in class_names
                                if f"iou/{n}" in model_metrics},
        "otsu": {k: round(otsu[k], 4) for k in keys},
        "trivial": {k: round(trivial[k], 4) for k in keys},
    }
    print(f"openclipart scenes: {report['scenes']}, drawings per class {report['drawings']} "
          f"({report['drawings_skipped']} PNGs skipped: too large or no alpha), "
          f"written in {report['generate_seconds']} s")
    print(f"held-out {report['scenes']['eval']} scenes after {report['steps']} steps "
          f"({report['train_seconds']} s, model {config.model.image_size} px)")
    print_comparison(report)
    print(f"model IoU per class {report['model_iou_per_class']}")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
