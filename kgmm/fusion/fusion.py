"""KnowledgeFusion: modality tokens self-attend, then cross-attend to KG entities through a gate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kgmm.errors import ConfigError, DataError
from kgmm.fusion.config import FusionConfig
from kgmm.fusion.entities import EntityEncoder, EntitySet
from kgmm.fusion.layer import FusionLayer
from kgmm.fusion.output import FusionOutput
from kgmm.fusion.retrieval import DenseEntityRetriever


class KnowledgeFusion(nn.Module):
    """Fuse per-modality token sequences and inject knowledge-graph entities.

    ``modality_dims`` maps each modality this model can receive to its encoder's feature size.
    All parameters exist whatever ``config.knowledge`` says, so one state dict serves the
    ``"on"``, ``"off"`` and ``"random"`` variants of a model.
    """

    def __init__(self, config: FusionConfig, modality_dims: dict[str, int]) -> None:
        super().__init__()
        unknown = sorted(set(modality_dims) - set(config.modalities))
        if unknown or not modality_dims:
            raise ConfigError(
                f"modality_dims keys {sorted(modality_dims)} must be a non-empty subset of "
                f"FusionConfig.modalities {list(config.modalities)}"
            )
        self.config = config
        self.modality_dims = dict(modality_dims)
        d_model = config.d_model
        self.input_proj = nn.ModuleDict(
            {m: nn.Linear(dim, d_model) for m, dim in modality_dims.items()}
        )
        self.input_norm = nn.ModuleDict({m: nn.LayerNorm(d_model) for m in modality_dims})
        self.modality_type_embedding = nn.Embedding(len(config.modalities), d_model)
        self.entity_encoder = EntityEncoder(config)
        self.retriever = DenseEntityRetriever(
            modality_dims,
            config.retrieval_modalities,
            config.entity_dim,
            config.retrieval_top_k,
            config.retrieval_temperature,
        )
        self.layers = nn.ModuleList(
            FusionLayer(d_model, config.num_heads, config.dropout) for _ in range(config.num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)

    @property
    def entity_source_names(self) -> tuple[str, ...]:
        """Name of each ``FusionOutput.entity_source`` value: ``linked``, then retrievers."""
        return ("linked", *self.config.retrieval_modalities)

    def gate_values(self) -> list[float]:
        """``tanh(gate)`` of each layer's cross-attention, for logging."""
        return [layer.cross_attn_gate.value() for layer in self.layers]

    def forward(
        self,
        modalities: dict[str, tuple[Tensor, Tensor]],
        pooled: dict[str, Tensor] | None = None,
        entity_ids: Tensor | None = None,
        entity_mask: Tensor | None = None,
        entity_relations: Tensor | None = None,
        entity_hops: Tensor | None = None,
        entity_table: Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> FusionOutput:
        """Fuse ``modalities`` (name -> ``(tokens [B, T, D_m], mask [B, T])``).

        ``entity_ids`` ``[B, E]`` index rows of ``entity_table`` ``[N, entity_dim]``; entries
        whose ``entity_mask`` is False may hold any value. Retrieval modalities found in
        ``pooled`` add their top-k entities. ``generator`` drives ``knowledge="random"``.
        """
        tokens, token_mask, slices = self._embed_modalities(modalities)
        has_tokens = token_mask.any(dim=1)
        attend_mask = token_mask | ~has_tokens[:, None]
        batch = tokens.shape[0]
        if self.config.knowledge == "off":
            entities = EntitySet.empty(batch, tokens.device)
        else:
            linked = self._linked_entities(
                batch, entity_ids, entity_mask, entity_relations, entity_hops, entity_table
            )
            entities = self._collect_entities(
                batch, tokens.device, linked, modalities, pooled, entity_table, generator
            )
        entity_states = self.entity_encoder(entities, entity_table) if entities.size else None

        x = tokens
        attention = torch.zeros(entities.ids.shape, device=tokens.device)
        token_count = token_mask.sum(dim=1).clamp(min=1)[:, None]
        for layer in self.layers:
            x, weights = layer(x, attend_mask, entity_states, entities.mask)
            if weights is not None:
                attention = attention + (weights * token_mask[..., None]).sum(dim=1) / token_count
        x = self.final_norm(x).masked_fill(~token_mask[..., None], 0.0)
        return FusionOutput(
            tokens=x,
            mask=token_mask,
            pooled=x.sum(dim=1) / token_count.to(x.dtype),
            modality_slices=slices,
            entity_ids=entities.ids,
            entity_mask=entities.mask,
            entity_states=(
                x.new_zeros(batch, 0, self.config.d_model)
                if entity_states is None
                else entity_states
            ),
            entity_attention=attention / len(self.layers),
            entity_source=entities.source,
        )

    def _embed_modalities(
        self, modalities: dict[str, tuple[Tensor, Tensor]]
    ) -> tuple[Tensor, Tensor, dict[str, slice]]:
        """Project, normalise and type-tag each present modality; concatenate in config order."""
        unknown = sorted(set(modalities) - set(self.modality_dims))
        if unknown:
            raise ConfigError(
                f"modalities {unknown} were given but the fusion was built for "
                f"{sorted(self.modality_dims)} (modality_dims)"
            )
        if not modalities:
            raise DataError("KnowledgeFusion needs at least one modality in the batch")
        batch = next(iter(modalities.values()))[0].shape[0]
        parts, masks, slices, start = [], [], {}, 0
        for index, name in enumerate(self.config.modalities):
            if name not in modalities:
                continue
            tokens, mask = modalities[name]
            self._check_modality(name, tokens, mask, batch)
            type_ids = torch.full((batch, 1), index, dtype=torch.long, device=tokens.device)
            x = self.input_norm[name](self.input_proj[name](tokens))
            parts.append(x + self.modality_type_embedding(type_ids))
            masks.append(mask.bool())
            slices[name] = slice(start, start + tokens.shape[1])
            start += tokens.shape[1]
        return torch.cat(parts, dim=1), torch.cat(masks, dim=1), slices

    def _check_modality(self, name: str, tokens: Tensor, mask: Tensor, batch: int) -> None:
        dim = self.modality_dims[name]
        if tokens.dim() != 3 or tokens.shape[0] != batch or tokens.shape[2] != dim:
            raise DataError(
                f"tokens for modality {name!r} have shape {tuple(tokens.shape)}; expected "
                f"[batch={batch}, T, {dim}]"
            )
        if tuple(mask.shape) != tuple(tokens.shape[:2]):
            raise DataError(
                f"mask for modality {name!r} has shape {tuple(mask.shape)}; expected "
                f"{tuple(tokens.shape[:2])} to match its tokens"
            )

    @staticmethod
    def _linked_entities(
        batch: int,
        entity_ids: Tensor | None,
        entity_mask: Tensor | None,
        entity_relations: Tensor | None,
        entity_hops: Tensor | None,
        entity_table: Tensor | None,
    ) -> EntitySet | None:
        if entity_ids is None:
            return None
        if entity_table is None:
            raise DataError("entity_ids were given without entity_table to look them up in")
        if entity_ids.dim() != 2 or entity_ids.shape[0] != batch:
            raise DataError(
                f"entity_ids has shape {tuple(entity_ids.shape)}; expected [batch={batch}, E]"
            )
        return EntitySet.linked(entity_ids, entity_mask, entity_relations, entity_hops)

    def _collect_entities(
        self,
        batch: int,
        device: torch.device,
        linked: EntitySet | None,
        modalities: dict[str, tuple[Tensor, Tensor]],
        pooled: dict[str, Tensor] | None,
        entity_table: Tensor | None,
        generator: torch.Generator | None,
    ) -> EntitySet:
        """Linked entities, then each retrieval modality's top-k; randomised if asked."""
        parts = [] if linked is None else [linked]
        if pooled and entity_table is not None:
            present = {
                name: modalities[name][1].bool().any(dim=1)
                if name in modalities
                else torch.ones(batch, dtype=torch.bool, device=device)
                for name in pooled
            }
            parts.extend(self.retriever(pooled, present, entity_table))
        if not parts:
            return EntitySet.empty(batch, device)
        entities = EntitySet.concat(parts)
        if self.config.knowledge == "random":
            entities.ids = self._draw(entities.ids, 0, entity_table.shape[0], generator)
            if self.config.num_relations:
                # The relation a neighbour was reached by is graph content too: redraw it
                # (seeds keep 0), or a random set would still say e.g. "has a treats edge".
                slots = 2 * self.config.num_relations + 1
                drawn = self._draw(entities.relations, 1, slots, generator)
                entities.relations = torch.where(entities.relations > 0, drawn, 0)
        return entities

    @staticmethod
    def _draw(like: Tensor, low: int, high: int, generator: torch.Generator | None) -> Tensor:
        """Uniform integers in ``[low, high)`` of ``like``'s shape, from ``generator``."""
        device = generator.device if generator is not None else like.device
        drawn = torch.randint(low, high, like.shape, generator=generator, device=device)
        return drawn.to(like.device)
