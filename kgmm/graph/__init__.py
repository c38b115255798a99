"""The knowledge-graph layer: storage, loaders, linking, embeddings."""

from kgmm.graph.entity import Entity, EntityRecord, Mention
from kgmm.graph.knowledge_graph import KnowledgeGraph, Neighborhood

__all__ = ["Entity", "EntityRecord", "KnowledgeGraph", "Mention", "Neighborhood"]
