"""The device a model runs on and its precision: bf16 autocast where the hardware has it.

Torch only, so every room may import it (like :mod:`kgmm.errors`): the model's ``predict``,
the Trainer and the ``kgmm`` command choose device and precision the same way."""

from __future__ import annotations

import warnings
from contextlib import AbstractContextManager

import torch

from kgmm.errors import ConfigError

__all__ = ["autocast", "native_bf16", "resolve_bf16", "resolve_device", "valid_bf16"]


def valid_bf16(choice: object) -> bool:
    """Whether ``choice`` is a bf16 setting: ``True``, ``False`` or ``"auto"`` (not 1 or 0)."""
    return isinstance(choice, bool) or choice == "auto"


def resolve_device(choice: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when available; under ``torchrun`` each process takes
    ``cuda:LOCAL_RANK``."""
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    if choice == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError("device is 'cuda' but no CUDA device is available; use 'cpu'")
        return torch.device("cuda", local_rank)
    return torch.device(choice)


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


def resolve_bf16(choice: bool | str, device: torch.device, stacklevel: int = 3) -> bool:
    """Whether to run under bf16 autocast on ``device``: ``"auto"`` when it is
    :func:`native_bf16`; ``True`` always, with a warning (``stacklevel`` frames up) where it
    is not; ``False`` never."""
    if not valid_bf16(choice):
        raise ConfigError(f"bf16 must be True, False or 'auto', got {choice!r}")
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
            stacklevel=stacklevel,
        )
    return bool(choice)


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
