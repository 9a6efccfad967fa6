"""``python -m visionpipe.serving serve ...``: the serving commands without the full CLI."""
import argparse
import sys

from visionpipe.pipeline.cli import UserError
from visionpipe.serving import commands


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m visionpipe.serving")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    commands.register(subparsers)
    args = parser.parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except UserError as err:
        print(f"{args.command}: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
