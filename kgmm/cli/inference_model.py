"""Loading a checkpoint for ``kgmm evaluate`` and ``kgmm predict`` at a chosen precision."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from kgmm.errors import ConfigError

if TYPE_CHECKING:  # the command's start stays fast: torch loads only when a command runs
    import torch

    from kgmm.model import FusedModel

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def add_inference_arguments(parser: argparse.ArgumentParser) -> argparse._MutuallyExclusiveGroup:
    """The checkpoint, task, batch size, device and precision arguments; returns the group
    ``--precision`` is in, so a command can add aliases that exclude it."""
    parser.add_argument("checkpoint", help="folder written by save_pretrained or a checkpoint")
    parser.add_argument("--task", required=True, help="the head to run")
    parser.add_argument("--batch-size", type=positive_int, default=32)
    parser.add_argument(
        "--device", default="auto", choices=["auto", "cpu", "cuda"], help="auto: cuda if any"
    )
    precision = parser.add_mutually_exclusive_group()
    precision.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto (default): bf16 autocast where the device multiplies bf16 in hardware, "
        "else fp32; bf16: bf16 autocast everywhere (emulated and slow without bf16 "
        "hardware); int8: dynamic int8 linear layers, on the CPU",
    )
    return precision


def load_for_inference(args: argparse.Namespace) -> tuple[FusedModel, bool | str, torch.device]:
    """The checkpoint's model on ``args.device`` at ``args.precision``, and the ``bf16``
    argument ``predict``/``evaluate_task`` take for it. int8 runs on the CPU: ``--device
    auto`` then means the CPU, and ``cuda`` is an error."""
    from kgmm.device import resolve_device
    from kgmm.model import FusedModel, int8_dynamic

    choice = args.device
    if args.precision == "int8":
        if choice == "cuda":
            raise ConfigError("--precision int8 runs on the CPU only; use --device cpu")
        choice = "cpu"
    device = resolve_device(choice)
    model = FusedModel.from_pretrained(args.checkpoint).to(device)
    if args.precision == "int8":
        return int8_dynamic(model), False, device
    return model, {"auto": "auto", "fp32": False, "bf16": True}[args.precision], device


def precision_used(args: argparse.Namespace, device: torch.device) -> str:
    """What ``--precision`` ran as on ``device``: ``auto`` resolved to bf16 or fp32."""
    from kgmm.device import native_bf16

    if args.precision != "auto":
        return args.precision
    return f"auto: {'bf16' if native_bf16(device) else 'fp32'}"
