"""CLI: ``visionpipe runs --config C [--json]``: past runs of a pipeline from ML Metadata."""
from __future__ import annotations

import json

from visionpipe.cli.args import add_config_arguments, load_config_from_args


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "runs", help="list past runs from ML Metadata (time, span, counts, gate, pushed version)")
    add_config_arguments(p)
    p.add_argument("--json", action="store_true", help="one JSON list, for scripts")
    p.set_defaults(handler=cmd_runs)


def cmd_runs(args) -> int:
    from visionpipe.core.errors import UserError
    from visionpipe.pipeline import history
    from visionpipe.pipeline.runners import RunPaths

    config = load_config_from_args(args)
    paths = RunPaths.of(config)
    rows = history.list_runs(paths, config)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        raise UserError(f"{paths.metadata_path}: no runs of pipeline {config.name!r} recorded")
    print(history.format_runs(rows))
    return 0
