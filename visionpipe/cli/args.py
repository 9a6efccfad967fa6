"""Arguments every config-driven command shares."""
from __future__ import annotations

import argparse


def add_config_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    parser.add_argument("--config", required=required, help="YAML config (configs/<task>.yaml)")
    parser.add_argument("overrides", nargs="*", metavar="key=value",
                        help="config overrides, e.g. train.epochs=3 model.backbone=resnet50")


def load_config_from_args(args):
    from visionpipe.core.config import load_config

    return load_config(args.config, args.overrides)
