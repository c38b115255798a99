"""Numeric precision for running a model: bf16 autocast where the hardware has it.

Torch only, so every room may import it (like :mod:`kgmm.errors`): the model's ``predict``
and the Trainer choose precision the same way."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager

import torch

__all__ = ["autocast", "native_bf16", "resolve_bf16"]


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` multiplies bf16 matrices in hardware: a CUDA GPU that supports bf16,
    or a CPU with AMX tiles or AVX-512 BF16 instructions.

    Elsewhere torch emulates bf16 matmuls: on an AVX2 AMD EPYC (one thread) they ran at 2-5%
    of fp32's speed (``benchmarks/matmul_precision.py``)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        # torch.cpu's probes are private but the only way torch exposes these CPU flags.
        return torch.cpu._is_amx_tile_supported() or torch.cpu._is_avx512_bf16_supported()
    return False


def resolve_bf16(choice: bool | str, device: torch.device) -> bool:
    """Whether to run under bf16 autocast on ``device``: ``"auto"`` when it is
    :func:`native_bf16`; ``True`` always, with a warning where it is not."""
    if choice == "auto":
        return native_bf16(device)
    if choice and not native_bf16(device):
        where = device.type
        if device.type == "cpu":
            where = f"this CPU ({torch.backends.cpu.get_cpu_capability()})"
        warnings.warn(
            f"bf16 autocast on {where}, which has no bf16 matmul hardware (AMX, AVX-512 BF16 "
            "or a bf16 GPU): its matmuls are emulated and can be far slower than fp32; "
            "bf16='auto' runs in fp32 here",
            stacklevel=3,
        )
    return bool(choice)


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
