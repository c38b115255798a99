"""kgmm: knowledge-enhanced multimodal models."""

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
]
