"""What :class:`kgmm.fusion.KnowledgeFusion` returns."""

from __future__ import annotations

from dataclasses import dataclass

from torch import Tensor


@dataclass
class FusionOutput:
    """Fused tokens plus the entity set they attended to.

    ``tokens [B, T, d_model]`` hold every present modality's tokens, in
    ``FusionConfig.modalities`` order, at ``modality_slices[name]``; padded positions are 0.
    ``pooled [B, d_model]`` is the masked mean over real tokens (0 for a sample with none).
    ``entity_*`` describe the final entity set ``[B, E']`` (linked + retrieved; ``E' = 0`` when
    knowledge is off or there is none): ``entity_states`` are the states the tokens
    cross-attended to (zero where masked), ``entity_attention`` the attention mass per entity
    averaged over heads, real tokens and layers (rows sum to 1 where the set is non-empty,
    0 otherwise; detached), and ``entity_source`` indexes
    ``KnowledgeFusion.entity_source_names``.
    """

    tokens: Tensor
    mask: Tensor
    pooled: Tensor
    modality_slices: dict[str, slice]
    entity_ids: Tensor
    entity_mask: Tensor
    entity_states: Tensor
    entity_attention: Tensor
    entity_source: Tensor
