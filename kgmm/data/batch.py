"""Moving collated batches between devices."""

from __future__ import annotations

from typing import Any

import torch


def move_to(value: Any, device: torch.device) -> Any:
    """``value`` with every tensor inside (dicts, lists) moved to ``device``."""
    if isinstance(value, torch.Tensor):
        return value.to(device, non_blocking=True)
    if isinstance(value, dict):
        return {key: move_to(item, device) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(move_to(item, device) for item in value)
    return value
