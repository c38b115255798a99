"""Configuration of :class:`kgmm.fusion.KnowledgeFusion`."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

from kgmm.errors import ConfigError

KNOWLEDGE_MODES = ("on", "off", "random")


@dataclass
class FusionConfig:
    """Sizes and switches of the fusion module; round-trips through JSON.

    ``knowledge`` selects how the entity set is used: ``"on"`` (normal), ``"off"`` (no
    cross-attention, no entities: the no-KG baseline) or ``"random"`` (every entity id is
    replaced by a uniformly drawn one, to test whether the graph's content matters).
    ``retrieval_temperature`` sharpens the softmax over retrieved entities' cosine scores.
    """

    d_model: int = 256
    num_heads: int = 4
    num_layers: int = 1
    dropout: float = 0.1
    entity_dim: int = 128
    num_relations: int = 0
    max_hops: int = 3
    retrieval_top_k: int = 8
    retrieval_modalities: tuple[str, ...] = ("image", "audio")
    retrieval_temperature: float = 0.1
    knowledge: str = "on"
    modalities: tuple[str, ...] = ("text", "image", "audio")

    def __post_init__(self) -> None:
        self.modalities = tuple(self.modalities)
        self.retrieval_modalities = tuple(self.retrieval_modalities)
        for name in ("d_model", "num_heads", "num_layers", "entity_dim"):
            if getattr(self, name) < 1:
                raise ConfigError(f"FusionConfig.{name} must be >= 1, got {getattr(self, name)}")
        for name in ("num_relations", "max_hops", "retrieval_top_k"):
            if getattr(self, name) < 0:
                raise ConfigError(f"FusionConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.d_model % self.num_heads:
            raise ConfigError(
                f"FusionConfig.d_model ({self.d_model}) must be divisible by "
                f"num_heads ({self.num_heads})"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"FusionConfig.dropout must be in [0, 1), got {self.dropout}")
        if self.retrieval_temperature <= 0:
            raise ConfigError(
                f"FusionConfig.retrieval_temperature must be > 0, got {self.retrieval_temperature}"
            )
        if self.knowledge not in KNOWLEDGE_MODES:
            raise ConfigError(
                f"FusionConfig.knowledge must be one of {KNOWLEDGE_MODES}, got {self.knowledge!r}"
            )
        if not self.modalities or len(set(self.modalities)) != len(self.modalities):
            raise ConfigError(
                f"FusionConfig.modalities must be non-empty and unique, got {self.modalities}"
            )
        unknown = [m for m in self.retrieval_modalities if m not in self.modalities]
        if unknown or len(set(self.retrieval_modalities)) != len(self.retrieval_modalities):
            raise ConfigError(
                f"FusionConfig.retrieval_modalities {self.retrieval_modalities} must be unique "
                f"names from modalities {self.modalities}"
            )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable dict (tuples become lists)."""
        data = asdict(self)
        data["modalities"] = list(self.modalities)
        data["retrieval_modalities"] = list(self.retrieval_modalities)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FusionConfig:
        """Inverse of :meth:`to_dict`; unknown keys are an error, missing keys take defaults."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown FusionConfig field(s) {unknown}; known: {sorted(known)}")
        return cls(**data)
