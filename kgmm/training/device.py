"""Choosing the device, moving batches onto it, and bf16 autocast."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Any

import torch

from kgmm.errors import ConfigError


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


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (dicts, lists) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to(item, device) for item in value)
    return value


def autocast(device: torch.device, bf16: bool) -> AbstractContextManager:
    """bfloat16 autocast on ``device`` when ``bf16``, else a no-op context."""
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16)
