"""Dense retrieval of KG entities from a modality's pooled vector."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from kgmm.fusion.entities import EntitySet


class DenseEntityRetriever(nn.Module):
    """Retrieve the top-k entities by cosine similarity to a projected pooled vector.

    One ``Linear(D_m -> entity_dim)`` per retrieval modality maps the pooled vector into entity
    space. Top-k selection is not differentiable, so the scores carry the gradient: each
    retrieved entity gets the weight ``k * softmax(cos / temperature)`` over that modality's
    top-k (mean 1), which multiplies its entity state, and so scales both its attention key and
    the value it contributes. The projection (and a trainable entity table) learn through it.
    """

    def __init__(
        self,
        modality_dims: dict[str, int],
        modalities: tuple[str, ...],
        entity_dim: int,
        top_k: int,
        temperature: float,
    ) -> None:
        super().__init__()
        self.proj = nn.ModuleDict(
            {m: nn.Linear(modality_dims[m], entity_dim) for m in modalities if m in modality_dims}
        )
        self.sources = {m: 1 + i for i, m in enumerate(modalities)}
        self.top_k = top_k
        self.temperature = temperature

    def forward(
        self, pooled: dict[str, Tensor], present: dict[str, Tensor], entity_table: Tensor
    ) -> list[EntitySet]:
        """One :class:`EntitySet` ``[B, k]`` per retrieval modality found in ``pooled``.

        ``present[m]`` (``[B]`` bool) marks samples that have modality ``m``; the others
        retrieve nothing (mask False).
        """
        top_k = min(self.top_k, entity_table.shape[0])
        if top_k == 0:
            return []
        keys = F.normalize(entity_table, dim=-1)
        parts = []
        for name, proj in self.proj.items():
            if name not in pooled:
                continue
            query = F.normalize(proj(pooled[name]), dim=-1)
            scores, ids = (query @ keys.transpose(0, 1).to(query.dtype)).topk(top_k, dim=-1)
            weight = top_k * (scores.float() / self.temperature).softmax(dim=-1)
            zeros = ids.new_zeros(ids.shape)
            parts.append(
                EntitySet(
                    ids=ids,
                    mask=present[name][:, None].expand_as(ids).clone(),
                    relations=zeros,
                    hops=zeros,
                    source=ids.new_full(ids.shape, self.sources[name]),
                    weight=weight,
                )
            )
        return parts
