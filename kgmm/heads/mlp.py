"""The small scoring network the classification-style heads share."""

from __future__ import annotations

from torch import nn


def build_mlp(d_model: int, out_features: int, hidden: int | None, dropout: float) -> nn.Sequential:
    """``dropout, linear``; with ``hidden``: ``dropout, linear, GELU, dropout, linear``."""
    if hidden is None:
        return nn.Sequential(nn.Dropout(dropout), nn.Linear(d_model, out_features))
    return nn.Sequential(
        nn.Dropout(dropout),
        nn.Linear(d_model, hidden),
        nn.GELU(),
        nn.Dropout(dropout),
        nn.Linear(hidden, out_features),
    )
