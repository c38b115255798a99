"""The knowledge-graph layer: storage, loaders, linking, embeddings."""

from kgmm.graph.entity import Entity, EntityRecord, Mention
from kgmm.graph.knowledge_graph import KnowledgeGraph, Neighborhood
from kgmm.graph.linker import EntityLinker

__all__ = ["Entity", "EntityLinker", "EntityRecord", "KnowledgeGraph", "Mention", "Neighborhood"]
