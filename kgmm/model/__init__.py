"""The fused model: config, model, output."""

from kgmm.model.adapter_config import AdapterConfig
from kgmm.model.config import EntityEmbeddingConfig, FusedConfig, LinkingConfig
from kgmm.model.fused_model import FusedModel
from kgmm.model.output import ModelOutput

__all__ = [
    "AdapterConfig",
    "EntityEmbeddingConfig",
    "FusedConfig",
    "FusedModel",
    "LinkingConfig",
    "ModelOutput",
]
