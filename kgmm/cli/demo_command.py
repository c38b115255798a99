"""``kgmm demo``: the first-minute run on the bundled medical graph."""

from __future__ import annotations

import argparse


def register(commands: argparse._SubParsersAction) -> None:
    demo = commands.add_parser(
        "demo", help="train a small knowledge-fused model on the bundled medical graph"
    )
    demo.add_argument("--graph", default=None, help="graph file (default: graphs/medical.tsv)")
    demo.add_argument("--steps", type=int, default=80, help="training steps per variant")
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--out", default="runs/demo", help="where the trained model is saved")
    demo.set_defaults(run=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    from kgmm.cli.demo import run

    return run(args)
