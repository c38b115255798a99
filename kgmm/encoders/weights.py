"""Reading a state dict from a ``.safetensors`` or ``.pth`` file without running code."""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import load_file

from kgmm.errors import CheckpointError

STATE_DICT_SUFFIXES = (".safetensors", ".pth", ".pt")


def looks_like_weights_file(value: str) -> bool:
    """True when ``value`` names a state-dict file rather than a registered weights name."""
    path = Path(value)
    return path.suffix in STATE_DICT_SUFFIXES or path.exists()


def load_state_dict_file(path: str | Path) -> dict[str, torch.Tensor]:
    """Load a state dict; ``.pth``/``.pt`` files are read with ``weights_only=True``."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"weights file {path} does not exist")
    if path.suffix not in STATE_DICT_SUFFIXES:
        raise CheckpointError(
            f"weights file {path} has suffix {path.suffix!r}; "
            f"expected one of {', '.join(STATE_DICT_SUFFIXES)}"
        )
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:
        raise CheckpointError(f"cannot read weights file {path}: {error}") from error
    if not isinstance(state, dict):
        raise CheckpointError(f"weights file {path} does not hold a state dict")
    return state


def load_weights_into(module: torch.nn.Module, path: str | Path) -> None:
    """Load a state-dict file into ``module``; every key must match."""
    state = load_state_dict_file(path)
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as error:
        raise CheckpointError(
            f"weights file {path} does not fit the {type(module).__name__} architecture: {error}"
        ) from error
