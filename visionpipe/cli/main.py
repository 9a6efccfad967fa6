"""`visionpipe` command line: one CLI across tasks and modes.

Each command lives in a module of this package that exposes ``register(subparsers)``;
handlers import TensorFlow lazily so ``visionpipe --help`` is instant. Errors the user can fix
(bad config key, missing file) print one line and exit 2, never a traceback (``--debug`` or
VISIONPIPE_DEBUG=1 prints it too).
"""
from __future__ import annotations

import argparse
import importlib
import os
import sys
import traceback
from typing import List, Optional

import visionpipe
from visionpipe.core.errors import ConfigError, UserError

DEBUG_ENV = "VISIONPIPE_DEBUG"

COMMAND_MODULES = [
    "visionpipe.cli.pipeline_commands",
    "visionpipe.cli.serving_commands",
    "visionpipe.cli.anchors",
    "visionpipe.cli.duplicates",
    "visionpipe.cli.schedule",
    "visionpipe.cli.runs",
    "visionpipe.cli.beam_cluster",
    "visionpipe.cli.track",
    "visionpipe.cli.explain",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="visionpipe",
        description="VisionPipe: ingest images, train, gate, optimize and serve vision models on TFX.")
    parser.add_argument("--version", action="version", version=f"visionpipe {visionpipe.__version__}")
    parser.add_argument("--debug", action="store_true",
                        help=f"print the traceback behind a one-line error (or set {DEBUG_ENV}=1)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(subparsers)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        result = args.handler(args)
    except (ConfigError, UserError, FileNotFoundError) as err:
        if args.debug or os.environ.get(DEBUG_ENV, "") not in ("", "0"):
            traceback.print_exc()
        print(f"visionpipe {args.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"visionpipe {args.command}: interrupted", file=sys.stderr)
        return 130
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
