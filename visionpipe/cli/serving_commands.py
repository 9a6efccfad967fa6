"""CLI: ``visionpipe serve`` (TF Serving-compatible server), ``serving-health`` and ``serving-config``.

``serve`` takes tensorflow_model_server's flag names, so a command line written for one works
for the other. ``serving-config`` writes the model config, batching and monitoring files that
real TF Serving (deploy/) and ``visionpipe serve`` both read.
"""
from __future__ import annotations

import argparse
import dataclasses
import signal
from pathlib import Path

from visionpipe.cli.args import add_config_arguments
from visionpipe.core.errors import UserError


def _bool(text: str) -> bool:
    lowered = text.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {text!r}")


FLAG_HELP = {
    "ssl_config_file": "tensorflow.serving.SSLConfig text proto (PEM contents of server_key, "
                       "server_cert, custom_ca; client_verify): TLS on the gRPC port, as "
                       "tensorflow_model_server's flag; REST stays plain HTTP",
    "allowed_ops": "comma-separated ops the model scan lets through (it refuses file system, "
                   "py-func and network ops before loading a version)",
}


def register(subparsers) -> None:
    from visionpipe.serving.options import ServerOptions

    defaults = ServerOptions()
    serve = subparsers.add_parser(
        "serve", help="serve pushed models over TF Serving's REST and gRPC APIs",
        description="A model server speaking TF Serving's REST and gRPC protocols. Flags have "
                    "tensorflow_model_server's names. Binds 127.0.0.1 unless --host is given. "
                    "With --config, the pipeline's serve: section gives host and ports and its "
                    "push: section the model (push.serving_root/<model name>); flags win.")
    add_config_arguments(serve, required=False)
    for field in dataclasses.fields(ServerOptions):
        default = getattr(defaults, field.name)
        kind = {bool: _bool, int: int, float: float}.get(type(default), str)
        extra = {"nargs": "?", "const": True} if kind is _bool else {}
        # None marks "not given", so --config can fill it; the dataclass default applies last.
        serve.add_argument(f"--{field.name}", type=kind, default=None,
                           metavar=kind.__name__.lstrip("_").upper(),
                           help=f"{FLAG_HELP.get(field.name, '')} (default: {default!r})".lstrip(),
                           **extra)
    serve.set_defaults(handler=run_serve)

    health = subparsers.add_parser(
        "serving-health", help="gRPC health check of a running server (like grpc_health_probe)",
        description="Call grpc.health.v1.Health/Check; exit 0 if the status is SERVING, else 1. "
                    "Works against `visionpipe serve`; real TF Serving does not implement it.")
    health.add_argument("--server", default="127.0.0.1:8500", help="gRPC host:port")
    health.add_argument("--service", default="", help="model name ('' = the whole server)")
    health.add_argument("--timeout", type=float, default=5.0, help="seconds")
    health.add_argument("--ca_cert", help="PEM file of the CA that signed the server's certificate (TLS)")
    health.add_argument("--client_cert", help="client certificate PEM file (server with client_verify)")
    health.add_argument("--client_key", help="the client certificate's key PEM file")
    health.set_defaults(handler=run_health)

    config = subparsers.add_parser(
        "serving-config", help="write models.config, batching.config and monitoring.config for TF Serving",
        description="Write TF Serving's model config, batching parameters and monitoring config "
                    "(text protos) for the models pushed under a serving root.")
    add_config_arguments(config, required=False)
    config.add_argument("--serving_root", help="pushed models (default: push.serving_root of --config)")
    config.add_argument("--model_name", action="append", default=[],
                        help="model to include (repeatable; default: every folder under the root)")
    config.add_argument("--output_dir", default="deploy/config", help="where to write the files")
    config.add_argument("--models_dir", default="/models",
                        help="where the serving root is mounted for the server (container path); "
                             "'' writes the serving root's absolute host path")
    config.add_argument("--num_versions", type=int, default=1, help="serve the latest N versions")
    config.add_argument("--label", action="append", default=[], metavar="MODEL:LABEL=VERSION",
                        help="version label, e.g. flowers:stable=3 (repeatable)")
    config.add_argument("--max_batch_size", type=int, default=32)
    config.add_argument("--batch_timeout_micros", type=int, default=2000)
    config.add_argument("--max_enqueued_batches", type=int, default=100)
    config.add_argument("--num_batch_threads", type=int, default=4)
    config.add_argument("--prometheus_path", default="/monitoring/prometheus/metrics")
    config.set_defaults(handler=run_serving_config)


def server_options(args):
    """Flags given, then the config's serve:/push: sections (with --config), then defaults."""
    import os

    from visionpipe.cli.args import load_config_from_args
    from visionpipe.serving.options import ServerOptions

    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(ServerOptions)
              if getattr(args, f.name, None) is not None}
    if getattr(args, "config", None):
        config = load_config_from_args(args)
        values.setdefault("host", config.serve.host)
        values.setdefault("port", config.serve.port)
        values.setdefault("rest_api_port", config.serve.rest_api_port)
        if config.push.allowed_ops:  # the ops LoadCheck let through are not refused here either
            values.setdefault("allowed_ops", ",".join(config.push.allowed_ops))
        if not values.get("model_config_file"):
            values.setdefault("model_name", config.model_name)
            values.setdefault("model_base_path",
                              os.path.join(config.push.serving_root, config.model_name))
    elif getattr(args, "overrides", None):
        raise UserError(f"config overrides {args.overrides} need --config")
    return ServerOptions(**values)


def run_serve(args) -> int:
    import logging

    from visionpipe.serving.model_config import ConfigFileError
    from visionpipe.serving.options import ServerOptions
    from visionpipe.serving.server import ModelServer

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    options = server_options(args)
    if options.ssl_config_file and not Path(options.ssl_config_file).is_file():
        raise UserError(f"--ssl_config_file {options.ssl_config_file}: file not found")
    if options.model_base_path and not Path(options.model_base_path).is_dir():
        raise UserError(f"--model_base_path: directory not found: {options.model_base_path}")
    try:
        server = ModelServer(options)
    except ConfigFileError as err:
        raise UserError(str(err)) from None
    except OSError as err:
        raise UserError(str(err)) from None
    signal.signal(signal.SIGTERM, lambda *_: server.stop())
    server.start()
    print(f"serving gRPC on {options.host}:{server.grpc_port}, REST on {options.host}:{server.rest_port}",
          flush=True)
    try:
        server.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def run_health(args) -> int:
    from visionpipe.serving.client import ServingClientError, health_check
    from visionpipe.serving.tls import channel_credentials

    credentials = channel_credentials(args.ca_cert, args.client_cert, args.client_key)
    try:
        status = health_check(args.server, args.service, args.timeout, credentials)
    except ServingClientError as err:
        status = str(err)
    print(f"service {args.service!r} on {args.server}: {status}")
    return 0 if status == "SERVING" else 1


def _parse_labels(items):
    labels = {}
    for item in items:
        try:
            model, rest = item.split(":", 1)
            label, version = rest.split("=", 1)
            labels.setdefault(model, {})[label] = int(version)
        except ValueError:
            raise UserError(f"--label {item!r}: expected MODEL:LABEL=VERSION") from None
    return labels


def _check_models_exist(root: Path, names, labels) -> None:
    """Every model named has a folder under the root, every label a model and a version there."""
    for name in names:
        if not (root / name).is_dir():
            raise UserError(f"--model_name {name}: no model folder {root / name}")
    for model, versions in labels.items():
        if model not in names:
            raise UserError(f"--label {model}:...: model {model!r} is not among the models "
                            f"written ({', '.join(names)})")
        for label, version in versions.items():
            if not (root / model / str(version)).is_dir():
                raise UserError(f"--label {model}:{label}={version}: no version folder "
                                f"{root / model / str(version)}")


def run_serving_config(args) -> int:
    from visionpipe.serving import model_config as mc

    serving_root, names = args.serving_root, list(args.model_name)
    if args.config:
        from visionpipe.cli.args import load_config_from_args

        config = load_config_from_args(args)
        serving_root = serving_root or config.push.serving_root
        names = names or [config.model_name]
    if not serving_root:
        raise UserError("give --serving_root or --config")
    root = Path(serving_root)
    if not names:
        if not root.is_dir():
            raise UserError(f"--serving_root: directory not found: {root}")
        names = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not names:
            raise UserError(f"--serving_root: no model folders under {root}")
    if args.num_versions < 1:
        raise UserError("--num_versions must be >= 1")
    labels = _parse_labels(args.label)
    _check_models_exist(root, names, labels)
    base = args.models_dir.rstrip("/") if args.models_dir else str(root.resolve())
    try:
        texts = {
            "models.config": mc.render_model_server_config(
                [(name, f"{base}/{name}") for name in names], args.num_versions,
                labels),
            "batching.config": mc.render_batching_parameters(
                args.max_batch_size, args.batch_timeout_micros, args.max_enqueued_batches,
                args.num_batch_threads),
            "monitoring.config": mc.render_monitoring_config(args.prometheus_path),
        }
    except mc.ConfigFileError as err:
        raise UserError(str(err)) from None
    out = Path(args.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for filename, text in texts.items():
        (out / filename).write_text(text)
    # Parse back what was written: a file real TF Serving rejects must fail here, not in a pod.
    mc.load_model_server_config(out / "models.config")
    mc.load_batching_parameters(out / "batching.config")
    mc.load_monitoring_config(out / "monitoring.config")
    print(f"wrote {', '.join(texts)} to {out} for models {', '.join(names)}")
    return 0
