"""``FusedConfig``: everything needed to rebuild a :class:`FusedModel`, as JSON."""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kgmm.errors import ConfigError
from kgmm.fusion import FusionConfig

ENTITY_SOURCES = ("text", "structure", "random")


@dataclass
class LinkingConfig:
    """How a sample's entity set is built from its text (in the collator)."""

    hops: int = 1
    max_entities: int = 64
    dense: bool = False
    dense_threshold: float = 0.75
    types: list[str] | None = None  # link only entities of these types (None: all)


@dataclass
class EntityEmbeddingConfig:
    """Where entity vectors come from: ``text`` (MiniLM over names and descriptions),
    ``structure`` (given :class:`EntityEmbeddings` from a KG model) or ``random``."""

    source: str = "text"
    trainable: bool = False
    dim: int = 128  # used by ``random`` only; otherwise the embeddings decide


@dataclass
class FusedConfig:
    """Encoders (``None`` = modality not used), fusion, heads and linking.

    ``text``/``image``/``audio`` hold the keyword arguments of :class:`TextEncoder`,
    :class:`ImageEncoder` and :class:`AudioEncoder`; ``heads`` maps a task name to a head
    spec ``{"type": "classification" | "qa" | "multiple_choice" | "translation" |
    "recommendation", ...head arguments}``.
    """

    text: dict[str, Any] | None = field(default_factory=dict)
    image: dict[str, Any] | None = None
    audio: dict[str, Any] | None = None
    fusion: FusionConfig = field(default_factory=FusionConfig)
    heads: dict[str, dict[str, Any]] = field(default_factory=dict)
    linking: LinkingConfig = field(default_factory=LinkingConfig)
    entity_embeddings: EntityEmbeddingConfig = field(default_factory=EntityEmbeddingConfig)
    seed: int = 0

    def __post_init__(self) -> None:
        if isinstance(self.fusion, dict):
            self.fusion = FusionConfig.from_dict(self.fusion)
        if isinstance(self.linking, dict):
            self.linking = build_config(LinkingConfig, self.linking, "linking")
        if isinstance(self.entity_embeddings, dict):
            self.entity_embeddings = build_config(
                EntityEmbeddingConfig, self.entity_embeddings, "entity_embeddings"
            )
        if self.entity_embeddings.source not in ENTITY_SOURCES:
            raise ConfigError(
                f"entity_embeddings.source must be one of {ENTITY_SOURCES}, "
                f"got {self.entity_embeddings.source!r}"
            )
        if not any(spec is not None for spec in (self.text, self.image, self.audio)):
            raise ConfigError("FusedConfig needs at least one of text, image, audio")
        for task, spec in self.heads.items():
            if not isinstance(spec, dict) or "type" not in spec:
                raise ConfigError(
                    f"heads[{task!r}] must be a dict with a 'type' field, got {spec!r}"
                )

    @property
    def modalities(self) -> tuple[str, ...]:
        return tuple(m for m in ("text", "image", "audio") if getattr(self, m) is not None)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["fusion"] = self.fusion.to_dict()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FusedConfig":
        return build_config(cls, data, "FusedConfig")

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2, ensure_ascii=False) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "FusedConfig":
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as error:
            raise ConfigError(f"{path}: cannot read the model config ({error})") from None


def build_config(kind: type, data: dict[str, Any], where: str):
    """``kind(**data)`` for a config dataclass; unknown keys are a ConfigError naming ``where``."""
    known = set(kind.__dataclass_fields__)
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown fields {unknown}; known fields: {sorted(known)}")
    return kind(**data)
