"""kgmm: knowledge-enhanced multimodal models.

The graph layer imports eagerly (numpy only); names that need torch load on first use, so
``kgmm graph stats`` starts fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from kgmm.errors import (
    CheckpointError,
    ConfigError,
    DataError,
    GraphFormatError,
    KGMMError,
    UnknownEntityError,
)
from kgmm.graph import Entity, EntityLinker, KnowledgeGraph, Mention, Neighborhood

__version__ = "0.1.0"

_LAZY = {
    "EntityEmbeddings": "kgmm.graph.embeddings",
    "train_kg_embeddings": "kgmm.graph.kge",
    "FusedConfig": "kgmm.model",
    "FusedModel": "kgmm.model",
    "ModelOutput": "kgmm.model",
    "Collator": "kgmm.data",
    "Trainer": "kgmm.training",
    "TrainingArguments": "kgmm.training",
    "TrainerCallback": "kgmm.training",
    "adapt": "kgmm.training",
    "read_manifest": "kgmm.data",
    "AdapterConfig": "kgmm.model",
}

__all__ = [
    "CheckpointError",
    "ConfigError",
    "DataError",
    "Entity",
    "EntityLinker",
    "GraphFormatError",
    "KGMMError",
    "KnowledgeGraph",
    "Mention",
    "Neighborhood",
    "UnknownEntityError",
    *_LAZY,
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'kgmm' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
