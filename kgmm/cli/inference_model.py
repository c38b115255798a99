"""Loading a checkpoint for ``kgmm evaluate`` and ``kgmm predict`` at a chosen precision."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # the command's start stays fast: torch loads only when a command runs
    import torch

    from kgmm.model import FusedModel

PRECISIONS = ("auto", "fp32", "bf16", "int8")


def add_inference_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="folder written by save_pretrained or a checkpoint")
    parser.add_argument("--task", required=True, help="the head to run")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    parser.add_argument(
        "--precision",
        default="auto",
        choices=PRECISIONS,
        help="auto: bf16 autocast where the device multiplies bf16 in hardware, else fp32; "
        "bf16: bf16 autocast everywhere (emulated, slow, where there is no bf16 hardware); "
        "int8: dynamic int8 linear layers (CPU only)",
    )


def load_for_inference(args: argparse.Namespace) -> tuple[FusedModel, bool | str, torch.device]:
    """The checkpoint's model on ``args.device`` at ``args.precision``, and the ``bf16``
    argument ``predict``/``evaluate_task`` take for it."""
    from kgmm.model import FusedModel, int8_dynamic
    from kgmm.training.device import resolve_device

    device = resolve_device(args.device)
    model = FusedModel.from_pretrained(args.checkpoint).to(device)
    if args.precision == "int8":
        return int8_dynamic(model), False, device
    return model, {"auto": "auto", "fp32": False, "bf16": True}[args.precision], device
