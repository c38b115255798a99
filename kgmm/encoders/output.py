"""The one output type every encoder returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass
class EncoderOutput:
    """A modality encoded as a token sequence.

    Attributes:
        tokens: ``[B, T, D]`` float token features.
        mask: ``[B, T]`` bool, ``True`` where a token is real (not padding).
        pooled: ``[B, D]`` one vector per sample.
    """

    tokens: torch.Tensor
    mask: torch.Tensor
    pooled: torch.Tensor


def masked_mean(tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of ``tokens [B, T, D]`` over the positions where ``mask [B, T]`` is True.

    A sample with no real token pools to zeros rather than NaN.
    """
    weights = mask.to(tokens.dtype).unsqueeze(-1)
    counts = weights.sum(dim=1).clamp(min=1.0)
    return (tokens * weights).sum(dim=1) / counts
