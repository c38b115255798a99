"""A batch's entity set and its encoding into ``d_model`` states."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from kgmm.fusion.config import FusionConfig

LINKED_SOURCE = 0


@dataclass
class EntitySet:
    """Per-sample entities, all ``[B, E]``.

    ``source`` is 0 for entities the caller linked (text mentions and their k-hop
    neighbourhood) and ``1 + i`` for entities retrieved by ``retrieval_modalities[i]``.
    ``weight`` multiplies an entity's state: 1 for linked entities, the retrieval
    confidence for retrieved ones (see :class:`kgmm.fusion.retrieval.DenseEntityRetriever`).
    """

    ids: Tensor
    mask: Tensor
    relations: Tensor
    hops: Tensor
    source: Tensor
    weight: Tensor

    @property
    def size(self) -> int:
        return self.ids.shape[1]

    @classmethod
    def empty(cls, batch: int, device: torch.device) -> EntitySet:
        long = torch.zeros(batch, 0, dtype=torch.long, device=device)
        return cls(
            ids=long,
            mask=torch.zeros(batch, 0, dtype=torch.bool, device=device),
            relations=long,
            hops=long,
            source=long,
            weight=torch.zeros(batch, 0, device=device),
        )

    @classmethod
    def linked(
        cls,
        ids: Tensor,
        mask: Tensor | None,
        relations: Tensor | None,
        hops: Tensor | None,
    ) -> EntitySet:
        """Entities the caller supplied; missing mask/relations/hops default to all-real/seed/0."""
        zeros = torch.zeros_like(ids)
        return cls(
            ids=ids,
            mask=torch.ones_like(ids, dtype=torch.bool) if mask is None else mask.bool(),
            relations=zeros if relations is None else relations,
            hops=zeros if hops is None else hops,
            source=torch.full_like(ids, LINKED_SOURCE),
            weight=torch.ones(ids.shape, device=ids.device),
        )

    @classmethod
    def concat(cls, parts: list[EntitySet]) -> EntitySet:
        return cls(
            ids=torch.cat([p.ids for p in parts], dim=1),
            mask=torch.cat([p.mask for p in parts], dim=1),
            relations=torch.cat([p.relations for p in parts], dim=1),
            hops=torch.cat([p.hops for p in parts], dim=1),
            source=torch.cat([p.source for p in parts], dim=1),
            weight=torch.cat([p.weight for p in parts], dim=1),
        )


class EntityEncoder(nn.Module):
    """Entity state = LayerNorm(Linear(embedding) + relation + hop + source) * weight.

    Relation ids follow the caller's offset scheme (0 = seed, relation ``r`` and its inverse
    ``r + R`` at ``>= 1``) and are ignored when ``num_relations`` is 0; hops above ``max_hops``
    share the last hop embedding. Padded entities (mask False) get zero states, whatever their
    id holds.
    """

    def __init__(self, config: FusionConfig) -> None:
        super().__init__()
        d_model = config.d_model
        self.entity_proj = nn.Linear(config.entity_dim, d_model)
        self.relation_embedding = (
            nn.Embedding(2 * config.num_relations + 1, d_model) if config.num_relations else None
        )
        self.hop_embedding = nn.Embedding(config.max_hops + 1, d_model)
        self.source_embedding = nn.Embedding(1 + len(config.retrieval_modalities), d_model)
        self.norm = nn.LayerNorm(d_model)
        self.max_hops = config.max_hops

    def forward(self, entities: EntitySet, entity_table: Tensor) -> Tensor:
        """Return ``[B, E, d_model]`` states for ``entities`` looked up in ``entity_table``."""
        ids = entities.ids.masked_fill(~entities.mask, 0)
        states = self.entity_proj(entity_table[ids])
        states = states + self.hop_embedding(entities.hops.clamp(0, self.max_hops))
        states = states + self.source_embedding(entities.source)
        if self.relation_embedding is not None:
            relations = entities.relations.masked_fill(~entities.mask, 0)
            states = states + self.relation_embedding(relations)
        states = self.norm(states) * entities.weight.unsqueeze(-1).to(states.dtype)
        return states.masked_fill(~entities.mask.unsqueeze(-1), 0.0)
