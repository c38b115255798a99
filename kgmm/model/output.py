"""What ``FusedModel.forward`` returns."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kgmm.fusion import FusionOutput


@dataclass
class ModelOutput:
    """The head's loss and logits plus the knowledge that went into them.

    ``entity_ids``/``entity_mask``/``entity_attention`` are ``[B, E]``: which entities each
    sample attended and how much (rows sum to 1 where the set is non-empty).
    ``predictions`` holds decoded ids where scores alone do not give the answer
    (generated translations).
    """

    loss: torch.Tensor | None
    logits: torch.Tensor
    entity_ids: torch.Tensor
    entity_mask: torch.Tensor
    entity_attention: torch.Tensor
    fused: FusionOutput
    predictions: torch.Tensor | None = None
