"""Turning gradients off for whole modules."""

from __future__ import annotations

from torch import nn


def freeze(module: nn.Module) -> None:
    """Stop ``module``'s parameters from training."""
    for parameter in module.parameters():
        parameter.requires_grad_(False)
