"""Membrane segmentation benchmark (ISBI 2012 EM stacks, ../shared/datasets/membrane): train the
configured U-Net on 24 images, score the 6 held out (fixed: stems 24..29) at their own 512x512
size, beside a classical baseline (a per-image Otsu threshold, skimage.filters.threshold_otsu:
bright = interior), then int8 vs float32 TFLite (file size ratio, mIoU drop at model size) and
the REST response of one image with the PNG class map vs the JSON class map + probabilities,
and the REST ``:predict`` p50/p99 latency (the project's server in a subprocess on a free
127.0.0.1 port) vs the direct ``serving_default`` call.

    python -m benchmarks.segmentation_bench                        # the measured run (990 steps, 512 px, 256 px crops)
    python -m benchmarks.segmentation_bench --steps 10 --requests 3 model.image_size=128 segmentation.train_crop=64   # a smoke run
    python -m benchmarks.segmentation_bench --serving-only          # REST bytes and p50 vs direct, with and without probabilities (untrained model)

Training is timed in wall seconds and in the process's CPU seconds (user + system, all threads,
``resource.getrusage``): the issue's budget is 15 CPU minutes.

The Examples are built as ImageExampleGen builds them (the mask_folder source, data.mask_values
mapping 0/255 to membrane/interior, the same validation and encoder), without Beam.
"""
from __future__ import annotations

import argparse
import copy
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

import visionpipe  # noqa: E402,F401
import keras_cv  # noqa: E402,F401  (before tensorflow_model_optimization)
import tensorflow as tf  # noqa: E402

DEFAULT_CONFIG = REPO / "configs" / "membrane_segmentation.yaml"
HELD_OUT = {str(i) for i in range(24, 30)}


def build_examples(config, held_out=HELD_OUT) -> Dict[str, List[bytes]]:
    from visionpipe.components.image_example_gen.encoding import to_tf_example
    from visionpipe.components.image_example_gen.items import Quarantined
    from visionpipe.components.image_example_gen.sources import make_source
    from visionpipe.components.image_example_gen.validation import ImageRules, validate_item

    data = config.data
    if not Path(data.path).is_dir():
        raise SystemExit(f"segmentation data not found at {data.path}")
    source = make_source(data)
    rules = ImageRules.from_config(config)
    splits: Dict[str, List[bytes]] = {"train": [], "eval": []}
    for item in source.items:
        valid = validate_item(item, source.class_names, rules)
        if isinstance(valid, Quarantined):
            raise SystemExit(f"quarantined: {valid.file}: {valid.reason}")
        split = "eval" if Path(item.filename).stem in held_out else "train"
        splits[split].append(to_tf_example(valid, source.class_names))
    return splits, source.class_names


def print_comparison(report: Dict) -> None:
    """The model beside the classical baseline (Otsu) and the majority-class predictor."""
    print(f"{'':10} {'mIoU':>7} {'Dice':>7} {'pixel acc':>9}")
    for name in ("model", "otsu", "trivial"):
        row = report[name]
        print(f"{name:10} {row['miou']:7.4f} {row['dice']:7.4f} {row['pixel_accuracy']:9.4f}")


def write_split(records: List[bytes], path: Path) -> List[str]:
    with tf.io.TFRecordWriter(str(path), tf.io.TFRecordOptions(compression_type="GZIP")) as writer:
        for record in records:
            writer.write(record)
    return [str(path)]


def otsu_baseline(task, eval_files) -> Dict[str, float]:
    from skimage.filters import threshold_otsu

    from visionpipe.core import features as F
    from visionpipe.core.examples import records
    from visionpipe.models.preprocessing import decode_image
    from visionpipe.tasks.segmentation.task import decode_mask_png

    interior = task.class_names.index("interior")
    acc = task._accumulator()
    for record in records(eval_files):
        parsed = F.parse_single(record, [F.ENCODED, F.SEGMENTATION_MASK])
        grey = decode_image(parsed[F.ENCODED]).numpy().mean(-1)
        predicted = np.where(grey > threshold_otsu(grey), interior, 1 - interior)
        acc.add(decode_mask_png(parsed[F.SEGMENTATION_MASK].numpy()), predicted)
    return acc.metrics(task.class_names)


def cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def rest_sizes(loaded, image: bytes) -> Dict[str, int]:
    """JSON bytes of one image's REST answer: the whole answer as served (``json_answer``:
    class map, PNG, image shape and, with segmentation.serve_probabilities, the
    probabilities), the class map alone and the PNG alone."""
    from visionpipe.serving import rest_json

    out = {k: v.numpy() for k, v in loaded.signatures["serving_default"](images=tf.constant([image])).items()}
    full = json.dumps(rest_json.predict_response(out, True))
    png = json.dumps(rest_json.predict_response({"class_map_png_bytes": out["class_map_png_bytes"]}, True))
    ids = json.dumps(rest_json.predict_response({"class_map": out["class_map"]}, True))
    return {"json_answer": len(full), "json_class_map": len(ids), "png_class_map": len(png),
            "answer_has_probabilities": int("probabilities" in out)}


def serving_only(config, class_names, eval_image: bytes, requests: int, tmp: Path) -> int:
    """REST answer bytes and :predict p50 vs the direct call of one untrained model exported
    twice, with and without ``segmentation.serve_probabilities`` (latency does not depend on
    the weights)."""
    from visionpipe.models import export
    from visionpipe.tasks import get_task

    model = get_task(config, class_names).build_model()
    rows = {}
    for serve in (True, False):
        variant = copy.deepcopy(config)
        variant.segmentation.serve_probabilities = serve
        task = get_task(variant, class_names)
        base = tmp / f"probabilities_{serve}"
        export.export_saved_model(model, task, str(base / "1"))
        sizes = rest_sizes(tf.saved_model.load(str(base / "1")), eval_image)
        latency = rest_latency(base, eval_image, requests)
        rows[serve] = {**sizes, **latency,
                       "rest_p50_over_direct_p50": round(latency["rest_p50_ms"] / latency["direct_p50_ms"], 2)}
    print(f"one {config.model.image_size} px image, {requests} REST :predict requests (whole answer) "
          f"vs the direct serving_default call:")
    print(f"{'serve_probabilities':20} {'JSON bytes':>11} {'REST p50 ms':>11} {'p99':>7} "
          f"{'direct p50':>10} {'REST/direct':>11}")
    for serve, row in rows.items():
        print(f"{str(serve).lower():20} {row['json_answer']:11,d} {row['rest_p50_ms']:11.1f} "
              f"{row['rest_p99_ms']:7.1f} {row['direct_p50_ms']:10.1f} {row['rest_p50_over_direct_p50']:11.2f}")
    print(f"PNG class map alone {rows[False]['png_class_map']:,d} bytes, JSON class map alone "
          f"{rows[False]['json_class_map']:,d}")
    return 0


def rest_latency(base: Path, image: bytes, count: int) -> Dict[str, float]:
    """p50/p99 milliseconds of the direct ``serving_default`` call and of a REST ``:predict``
    on one image (the whole answer: class map, PNG, probabilities) to the project's server in
    its own process (benchmarks.serving_bench), timed in rotation after 3 warm-up rounds."""
    import base64

    import requests

    from benchmarks.serving_bench import MODEL, _Server
    from visionpipe.serving.servable import LoadedVersion

    signature = LoadedVersion(MODEL, 1, base / "1").signature("serving_default")
    payload = {"instances": [{"b64": base64.b64encode(image).decode("ascii")}]}
    times = {"direct": [], "rest": []}
    with _Server(base) as server, requests.Session() as session:
        url = f"http://127.0.0.1:{server.rest_port}/v1/models/{MODEL}:predict"
        calls = {"direct": lambda: signature.function(images=tf.constant([image])),
                 "rest": lambda: session.post(url, json=payload, timeout=60).raise_for_status()}
        for round_ in range(3 + count):
            for name, call in calls.items():
                began = time.perf_counter()
                call()
                if round_ >= 3:
                    times[name].append((time.perf_counter() - began) * 1000)
    return {f"{name}_{q}": round(float(np.percentile(values, pct)), 1)
            for name, values in times.items() for q, pct in (("p50_ms", 50), ("p99_ms", 99))}


def tflite_ms_per_image(path: str, pairs, repeats: int = 3) -> float:
    """Median milliseconds per image of the TFLite interpreter (batch 1, after one warm-up)."""
    from visionpipe.runtime.tflite_runtime import TFLiteModel

    model = TFLiteModel(path)
    images = [image[None] for batch, _ in pairs.as_numpy_iterator() for image in batch]
    model.scores(images[0])
    times = []
    for _ in range(repeats):
        for image in images:
            start = time.perf_counter()
            model.scores(image)
            times.append((time.perf_counter() - start) * 1000)
    return float(np.median(times))


def main(argv) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default=str(DEFAULT_CONFIG))
    parser.add_argument("--steps", type=int, default=1000, help="training steps in all (rounded down to whole epochs)")
    parser.add_argument("--json", help="write the numbers here too")
    parser.add_argument("--requests", type=int, default=30, help="REST requests for the latency")
    parser.add_argument("--serving-only", action="store_true",
                        help="only the REST answer with and without probabilities (untrained model)")
    parser.add_argument("overrides", nargs="*",
                        default=[],
                        help="config overrides (default none: the config is the measured run's)")
    args = parser.parse_args(argv)

    from visionpipe.core.config import load_config
    from visionpipe.models import data, export, training
    from visionpipe.runtime import tflite_convert
    from visionpipe.tasks import get_task

    config = load_config(args.config, [f"data.path={REPO.parent / 'shared' / 'datasets' / 'membrane'}",
                                       *args.overrides])
    epochs = max(1, min(config.train.epochs, args.steps))
    config.train.epochs, config.train.steps_per_epoch = epochs, max(1, args.steps // epochs)
    config.validate()
    start, start_cpu = time.time(), cpu_seconds()
    splits, class_names = build_examples(config)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if args.serving_only:
            image = data.raw_images(write_split(splits["eval"], tmp / "eval.gz"), 1)[0]
            return serving_only(config, class_names, image, args.requests, tmp)
        train_files = write_split(splits["train"], tmp / "train.gz")
        eval_files = write_split(splits["eval"], tmp / "eval.gz")
        task = get_task(config, class_names)
        result = training.train(config, task, train_files, eval_files, log_dir=str(tmp / "logs"))
        train_seconds, train_cpu = time.time() - start, cpu_seconds() - start_cpu
        export_dir = str(tmp / "export" / "1")  # a version folder: the server loads it
        export.export_saved_model(result.model, task, export_dir)
        loaded = tf.saved_model.load(export_dir)
        model_metrics = task.evaluate_loaded(loaded, eval_files)
        details = task.evaluation_details(export_dir, eval_files)
        otsu = otsu_baseline(task, eval_files)
        trivial = task.trivial_metrics(eval_files, train_files)

        images = data.pairs(train_files, task).map(lambda x, _: x).as_numpy_iterator()
        representative = tflite_convert.representative_dataset(images, 16)
        pairs = task.batch_dataset(data.pairs(eval_files, task), 2)
        # the same weights scored without test-time flips (at model size: the membrane
        # images are 512x512, their own size)
        one_pass = copy.deepcopy(config)
        one_pass.segmentation.test_time_flips = "none"
        without_flips = get_task(one_pass, class_names).evaluate_model(result.model, pairs)
        tflite = {}
        for mode in ("float32", "int8"):
            content = task.convert_tflite(result.model, mode, representative if mode == "int8" else None)
            path = tflite_convert.write(str(tmp / f"model_{mode}.tflite"), content)
            tflite[mode] = {"bytes": len(content), **task.evaluate_tflite(path, pairs),
                            "ms_per_image": tflite_ms_per_image(path, pairs)}
        first_image = data.raw_images(eval_files, 1)[0]
        sizes = rest_sizes(loaded, first_image)
        latency = rest_latency(tmp / "export", first_image, args.requests)

    keys = ("miou", "dice", "pixel_accuracy")
    report = {
        "steps": config.train.epochs * config.train.steps_per_epoch,
        "model_image_size": config.model.image_size, "train_seconds": round(train_seconds, 1),
        "train_cpu_seconds": round(train_cpu, 1), "test_time_flips": config.segmentation.test_time_flips,
        "elastic_displacement": config.segmentation.elastic_displacement,
        "model": {k: round(model_metrics[k], 4) for k in keys},
        "model_without_test_time_flips": {k: round(without_flips[k], 4) for k in keys},
        "model_iou_per_class": {name: round(v["iou"], 4) for name, v in details["per_class"].items()},
        "model_boundary_f1": round(details["boundary_f1"]["f1"], 4),
        "otsu": {k: round(otsu[k], 4) for k in keys},
        "trivial": {k: round(trivial[k], 4) for k in keys},
        "tflite_int8_over_float32_size": round(tflite["int8"]["bytes"] / tflite["float32"]["bytes"], 3),
        "tflite_float32_miou": round(tflite["float32"]["miou"], 4),
        "tflite_int8_miou": round(tflite["int8"]["miou"], 4),
        "tflite_int8_miou_drop": round(tflite["float32"]["miou"] - tflite["int8"]["miou"], 4),
        "tflite_float32_ms": round(tflite["float32"]["ms_per_image"], 2),
        "tflite_int8_ms": round(tflite["int8"]["ms_per_image"], 2),
        "tflite_int8_over_float32_latency": round(
            tflite["int8"]["ms_per_image"] / tflite["float32"]["ms_per_image"], 3),
        "rest_bytes": sizes,
        "rest_png_over_json_class_map": round(sizes["png_class_map"] / sizes["json_class_map"], 4),
        "rest_png_over_json_answer": round(sizes["png_class_map"] / sizes["json_answer"], 5),
        "rest_latency": latency,
        "rest_p50_over_direct_p50": round(latency["rest_p50_ms"] / latency["direct_p50_ms"], 2),
    }
    print(f"held-out 6 images at 512x512 after {report['steps']} steps ({report['train_seconds']} s, "
          f"{report['train_cpu_seconds']} CPU s, model {config.model.image_size} px, test-time flips "
          f"{report['test_time_flips']}, elastic {report['elastic_displacement']} px)")
    print_comparison(report)
    print(f"the same model without test-time flips (one pass): " + ", ".join(
        f"{k} {v}" for k, v in report["model_without_test_time_flips"].items()))
    print(f"model IoU per class {report['model_iou_per_class']}, boundary F1 "
          f"({details['boundary_f1']['tolerance_px']} px) {report['model_boundary_f1']}")
    print(f"TFLite int8/float32 size {report['tflite_int8_over_float32_size']}, mIoU float32 "
          f"{report['tflite_float32_miou']} int8 {report['tflite_int8_miou']} "
          f"(drop {report['tflite_int8_miou_drop']}); latency int8 {report['tflite_int8_ms']} ms / "
          f"float32 {report['tflite_float32_ms']} ms per image = "
          f"{report['tflite_int8_over_float32_latency']}")
    print(f"REST bytes per 512x512 image: {sizes}; PNG/JSON class map "
          f"{report['rest_png_over_json_class_map']}, PNG/JSON whole answer "
          f"{report['rest_png_over_json_answer']}")
    print(f"REST :predict of one 512x512 image (whole answer), {args.requests} requests: p50 "
          f"{latency['rest_p50_ms']} ms (p99 {latency['rest_p99_ms']}) vs the direct serving_default "
          f"call {latency['direct_p50_ms']} ms (p99 {latency['direct_p99_ms']}): "
          f"{report['rest_p50_over_direct_p50']}x")
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
