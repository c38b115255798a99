"""Choosing the device and moving batches onto it."""

from __future__ import annotations

import torch

from kgmm.data.batch import move_to
from kgmm.errors import ConfigError

__all__ = ["move_to", "resolve_device"]


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
