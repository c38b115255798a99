"""Entry point of the ``kgmm`` command: argument parsing and error reporting."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from kgmm.cli import demo_command, graph_commands, predict_command, train_command
from kgmm.errors import KGMMError

EXIT_BAD_INPUT = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="kgmm", description="Knowledge-enhanced multimodal models."
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    graph_commands.register(commands)
    demo_command.register(commands)
    train_command.register(commands)
    predict_command.register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command; bad input prints one line to stderr and exits with code 2."""
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except KGMMError as error:
        print(f"kgmm: error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
