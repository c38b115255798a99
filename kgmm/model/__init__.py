"""The fused model: config, model, output."""

from kgmm.model.adapter_config import AdapterConfig
from kgmm.model.config import EntityEmbeddingConfig, FusedConfig, LinkingConfig
from kgmm.model.fused_model import FusedModel
from kgmm.model.output import ModelOutput
from kgmm.model.quantization import int8_dynamic, is_int8_dynamic, resolve_model_bf16

__all__ = [
    "AdapterConfig",
    "EntityEmbeddingConfig",
    "FusedConfig",
    "FusedModel",
    "LinkingConfig",
    "ModelOutput",
    "int8_dynamic",
    "is_int8_dynamic",
    "resolve_model_bf16",
]
