"""KG embedding models, their training loop and rank-based evaluation."""

from kgmm.graph.kge.evaluation import KnownTriples, rank_metrics, rank_triples
from kgmm.graph.kge.models import (
    MODELS,
    ComplEx,
    DistMult,
    KGEModel,
    RotatE,
    TransE,
    build_model,
)
from kgmm.graph.kge.training import DEFAULTS, TrainingConfig, train_kg_embeddings

__all__ = [
    "DEFAULTS",
    "MODELS",
    "ComplEx",
    "DistMult",
    "KGEModel",
    "KnownTriples",
    "RotatE",
    "TrainingConfig",
    "TransE",
    "build_model",
    "rank_metrics",
    "rank_triples",
    "train_kg_embeddings",
]
