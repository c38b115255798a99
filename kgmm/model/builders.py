"""Plain functions that build a model's parts from a :class:`FusedConfig`."""

from __future__ import annotations

from typing import Any

from torch import nn

from kgmm.encoders import AudioEncoder, ImageEncoder, TextEncoder
from kgmm.errors import ConfigError
from kgmm.heads import build_head as rebuild_head
from kgmm.heads import head_type

ENCODER_TYPES: dict[str, type] = {"text": TextEncoder, "image": ImageEncoder, "audio": AudioEncoder}


def build_encoder(modality: str, arguments: dict[str, Any]) -> nn.Module:
    """The encoder of ``modality`` from its keyword arguments."""
    try:
        return ENCODER_TYPES[modality](**arguments)
    except TypeError as error:
        raise ConfigError(f"config.{modality}: {error}") from None


def build_head(task: str, spec: dict[str, Any], d_model: int) -> nn.Module:
    """A head from ``{"type": ..., **arguments}``; a spec saved by ``head_config`` (it holds
    ``d_model``) is rebuilt as saved."""
    if "d_model" in spec:
        return rebuild_head(spec)
    arguments = dict(spec)
    kind = head_type(arguments.pop("type"))
    try:
        return kind(d_model=d_model, **arguments)
    except TypeError as error:
        raise ConfigError(f"heads[{task!r}]: {error}") from None
