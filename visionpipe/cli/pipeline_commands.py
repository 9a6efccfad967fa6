"""Pipeline and model commands: run, ingest, compile, config, predict, augment-preview, demo."""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path
from typing import List

from visionpipe.cli.args import add_config_arguments, load_config_from_args
from visionpipe.core.errors import UserError

DEFAULT_CONFIG = "configs/classification.yaml"


def register(subparsers) -> None:
    p = subparsers.add_parser("run", help="run the whole pipeline (ingest → validate → train → "
                                          "evaluate → [optimize] → load check → push)")
    add_config_arguments(p)
    p.add_argument("--runner", choices=["local", "beam"], help="override runner.kind")
    p.set_defaults(handler=cmd_run)

    p = subparsers.add_parser("ingest", help="ingest and validate the data only; print counts, "
                                             "quarantined items and artifact locations")
    add_config_arguments(p)
    p.set_defaults(handler=cmd_ingest)

    p = subparsers.add_parser("compile", help="write an orchestrator spec (compile only)")
    add_config_arguments(p)
    p.add_argument("--target", choices=["kubeflow"], default="kubeflow")
    p.add_argument("--output", default="pipeline_spec.json", help="spec file to write")
    p.add_argument("--image", default="visionpipe:latest", help="container image of the components")
    p.add_argument("--pipeline_root", help="URI the workers read and write, e.g. gs://bucket/root "
                                           "(default: runner.output_dir/<name>/pipeline_root)")
    p.set_defaults(handler=cmd_compile)

    p = subparsers.add_parser("config", help="print the resolved config (defaults → YAML → overrides)")
    add_config_arguments(p, required=False)
    p.add_argument("--keys", action="store_true", help="list every valid key instead")
    p.set_defaults(handler=cmd_config)

    p = subparsers.add_parser("predict", help="predict images with a model directory, a .tflite "
                                              "file, or a running server")
    p.add_argument("images", nargs="+", help="image files")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--model", help="a SavedModel directory (e.g. a pushed version)")
    source.add_argument("--tflite", help="a .tflite file")
    source.add_argument("--server", help="host:port of a TF Serving-compatible server")
    p.add_argument("--model_name", default="", help="with --server: the served model's name")
    p.add_argument("--protocol", choices=["rest", "grpc"], default="rest", help="with --server")
    p.add_argument("--ca_cert", help="with --protocol grpc: PEM file of the CA that signed the "
                                     "server's certificate (TLS)")
    p.add_argument("--client_cert", help="with --protocol grpc: client certificate PEM file "
                                         "(for a server with client_verify)")
    p.add_argument("--client_key", help="with --protocol grpc: the client certificate's key PEM file")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("--output_dir", default="predictions",
                   help="detectors and segmenters: where the drawn images (and class maps) are written")
    p.add_argument("--min_score", type=float, default=0.3,
                   help="detectors: show boxes scoring at least this (the export keeps its own "
                        "detection.score_threshold, 0.05 for COCO evaluation)")
    p.set_defaults(handler=cmd_predict)

    p = subparsers.add_parser("augment-preview", help="write a PNG grid of augmented training samples")
    add_config_arguments(p)
    p.add_argument("--output", default="augment_preview.png")
    p.add_argument("--count", type=int, default=16, help="source images, taken across the classes")
    p.add_argument("--draws", type=int, default=3, help="augmented draws shown per image")
    p.set_defaults(handler=cmd_augment_preview)

    p = subparsers.add_parser("demo", help="the main job end to end on generated shapes data: run, "
                                           "push, predict new images")
    p.add_argument("--config", default=DEFAULT_CONFIG)
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.add_argument("--predict_images", type=int, default=10)
    p.set_defaults(handler=cmd_demo)


def _pipeline_errors():
    from visionpipe.components.data_validation.executor import DataValidationError
    from visionpipe.components.image_example_gen.report import IngestError

    return (DataValidationError, IngestError)


def _run(config, runner=None, stop_after_data=False):
    from visionpipe.pipeline import runners, summary

    try:
        paths = runners.run_pipeline(config, runner=runner, stop_after_data=stop_after_data)
    except _pipeline_errors() as err:
        raise UserError(str(err)) from None
    from visionpipe.pipeline.run_report import write_run_report

    result = summary.build_summary(paths, config)
    result["report"] = write_run_report(result, config)
    summary.write_summary(result, paths.run_dir)
    return paths, result


def cmd_run(args) -> int:
    from visionpipe.pipeline import summary

    config = load_config_from_args(args)
    start = time.time()
    paths, result = _run(config, runner=args.runner)
    print(summary.format_summary(result))
    print(f"  {'resolved config':<22} {paths.config_path}")
    print(f"  {'elapsed':<22} {time.time() - start:.1f}s")
    return 0


def cmd_ingest(args) -> int:
    config = load_config_from_args(args)
    paths, result = _run(config, stop_after_data=True)
    data = result.get("data", {})
    print("Ingested:")
    for split, count in sorted(data.get("splits", {}).items()):
        print(f"  {split:<10} {count} examples")
    print(f"  quarantined {data.get('quarantined', 0)}, duplicates {data.get('duplicates', 0)}; "
          f"report: {data.get('quarantine_report', '-')}")
    for split, shares in sorted(data.get("pixel_share_by_class", {}).items()):
        from visionpipe.pipeline.summary import pixel_share_text

        print(f"  pixel share ({split}): {pixel_share_text(shares)}")
    for warning in result.get("warnings", []):
        print(f"  warning: {warning}")
    print(f"  examples artifact: {data.get('examples_uri', '-')}")
    print(f"  ML Metadata (lineage): {paths.metadata_path}")
    print(f"  resolved config: {paths.config_path}")
    return 0


def cmd_compile(args) -> int:
    from visionpipe.pipeline import runners

    config = load_config_from_args(args)
    local_schema, schema_uri = runners.compile_kubeflow(config, args.output, args.image,
                                                        args.pipeline_root)
    print(f"wrote {args.target} pipeline spec to {args.output} (image {args.image})")
    print(f"copy the schema to where the spec reads it: {local_schema} -> {schema_uri}")
    return 0


def cmd_config(args) -> int:
    from visionpipe.core.config import PipelineConfig, all_keys, load_config

    if args.keys:
        print("\n".join(all_keys(PipelineConfig)))
        return 0
    print(load_config(args.config, args.overrides).to_yaml(), end="")
    return 0


def _read_images(paths: List[str]) -> List[bytes]:
    images = []
    for path in paths:
        p = Path(path)
        if not p.is_file():
            raise UserError(f"image not found: {path}")
        images.append(p.read_bytes())
    return images


def predict_saved_model(model_dir: str, images: List[bytes]):
    import visionpipe  # noqa: F401
    import tensorflow as tf

    if not (Path(model_dir) / "saved_model.pb").exists():
        raise UserError(f"--model {model_dir}: no saved_model.pb there (pass a version directory, "
                        f"e.g. serving_models/<name>/1)")
    try:
        fn = tf.saved_model.load(model_dir).signatures["serving_default"]
    except (OSError, ValueError, KeyError, tf.errors.OpError) as err:
        raise UserError(f"--model {model_dir}: not a loadable SavedModel with a serving_default "
                        f"signature ({_first_line(err)})") from None
    outputs = fn(images=tf.constant(images))
    return {k: v.numpy() for k, v in outputs.items()}


def _first_line(err: Exception) -> str:
    text = getattr(err, "message", None) or str(err)
    return text.strip().splitlines()[0] if text.strip() else type(err).__name__


def _check_decodable(paths: List[str], images: List[bytes]) -> None:
    """Decode each file as every model input path does, so a bad file is named before the
    batch is run (the model's decode error does not say which file it was)."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.models.preprocessing import decode_image

    for path, encoded in zip(paths, images):
        try:
            decode_image(tf.constant(encoded))
        except tf.errors.InvalidArgumentError as err:
            raise UserError(f"{path}: not a decodable image (JPEG, PNG, GIF or BMP): "
                            f"{_first_line(err)}") from None


def cmd_predict(args) -> int:
    if args.server:
        from visionpipe.serving import client

        tls_options = {"ca_cert": args.ca_cert, "client_cert": args.client_cert,
                       "client_key": args.client_key}
        if not args.model_name:
            raise UserError("--server needs --model_name (the served model's name)")
        if any(tls_options.values()) and args.protocol != "grpc":
            raise UserError("--ca_cert/--client_cert/--client_key need --protocol grpc "
                            "(REST is plain HTTP, as in TF Serving)")
        try:
            results = client.predict_images(args.server, args.model_name, args.images,
                                            protocol=args.protocol, **tls_options)
        except (client.ServingClientError, ValueError) as err:  # one line, not a traceback
            raise UserError(f"--server {args.server}: {err}") from None
        for path, result in zip(args.images, results):
            print(f"{path}: {json.dumps(result, default=str)[:400]}")
        return 0
    images = _read_images(args.images)
    _check_decodable(args.images, images)
    if args.tflite:
        from visionpipe.runtime import tflite_runtime

        if not Path(args.tflite).is_file():
            raise UserError(f"--tflite {args.tflite}: file not found")
        try:
            outputs = tflite_runtime.predict_files(args.tflite, args.images)
        except ValueError as err:  # names the file: not a TFLite model, wrong input, bad image
            raise UserError(f"--tflite {err}") from None
        for path, result in zip(args.images, outputs):
            print(f"{path}: {json.dumps(result, default=str)[:400]}")
        return 0
    outputs = predict_saved_model(args.model, images)
    options = argparse.Namespace(as_json=args.json, output_dir=args.output_dir,
                                 min_score=args.min_score, class_names=_export_class_names(args.model))
    for line in _presenter(args.model).present(args.images, images, outputs, options):
        print(line)
    return 0


def _export_class_names(model_dir: str) -> List[str]:
    """The export's ``assets/labels.txt`` (class names by id), or [] for an export without it."""
    import visionpipe  # noqa: F401
    import tensorflow as tf

    from visionpipe.models import export

    try:
        return export.read_class_names(model_dir)
    except tf.errors.NotFoundError:
        return []


def _presenter(model_dir: str):
    """The class that presents this export's predictions: the task that made it (recorded in
    the export), or the generic presentation for an export without the record."""
    from visionpipe.models import export
    from visionpipe.tasks import task_class
    from visionpipe.tasks.base import Task

    name = export.read_task_name(model_dir)
    return task_class(name) if name else Task


def cmd_augment_preview(args) -> int:
    from visionpipe.cli import augment_preview

    print(augment_preview.run(load_config_from_args(args), args.output, args.count, args.draws))
    return 0


def cmd_demo(args) -> int:
    from visionpipe.datasets import shapes
    from visionpipe.pipeline import summary
    from visionpipe.core.config import load_config

    config = load_config(args.config, args.overrides)
    start = time.time()
    print(f"VisionPipe demo: task {config.task}, {config.data.num_images} generated "
          f"{config.data.image_size}px shapes images, backbone {config.model.backbone}")
    paths, result = _run(config)
    print(summary.format_summary(result))
    print(f"  {'pipeline time':<22} {time.time() - start:.1f}s")
    pushed = summary.pushed_path(result)
    if not pushed:
        print("\nThe model was not pushed (see the summary above).", file=sys.stderr)
        return 1
    # New scenes from a seed the training data never used.
    out = Path(paths.run_dir) / "demo_predict"
    written = shapes.write_classification_folder(out, args.predict_images, config.data.image_size,
                                                 seed=config.data.seed + 1000)
    files = [path for path, _ in written]
    outputs = predict_saved_model(pushed, _read_images(files))
    correct = 0
    print(f"\nPredictions of the pushed model ({pushed}) on {len(files)} new images:")
    for (path, truth), names, scores in zip(written, outputs["top_k_names"], outputs["top_k_scores"]):
        top = names[0].decode()
        correct += top == truth
        print(f"  {os.path.relpath(path):<60} true {truth:<9} predicted {top:<9} {scores[0]:.3f}")
    print(f"  {correct}/{len(files)} correct")
    base = os.path.dirname(pushed)
    print("\nServe it with the TF Serving REST/gRPC API:\n"
          f"  visionpipe serve --model_base_path {base} --model_name {config.model_name} "
          f"--rest_api_port 8501 --port 8500\n"
          f"  curl -d '{{\"instances\": [{{\"b64\": \"'$(base64 -w0 {os.path.relpath(files[0])})'\"}}]}}' "
          f"http://127.0.0.1:8501/v1/models/{config.model_name}:predict")
    return 0
