"""Plain functions that build a model's parts from a :class:`FusedConfig`."""

from __future__ import annotations

from typing import Any

from torch import nn

from kgmm.encoders import AudioEncoder, ImageEncoder, TextEncoder
from kgmm.errors import ConfigError
from kgmm.heads import (
    ClassificationHead,
    MultipleChoiceHead,
    QuestionAnsweringHead,
    RecommendationHead,
    TranslationHead,
)

HEAD_TYPES: dict[str, type] = {
    "classification": ClassificationHead,
    "qa": QuestionAnsweringHead,
    "multiple_choice": MultipleChoiceHead,
    "translation": TranslationHead,
    "recommendation": RecommendationHead,
}
ENCODER_TYPES: dict[str, type] = {"text": TextEncoder, "image": ImageEncoder, "audio": AudioEncoder}


def build_encoder(modality: str, arguments: dict[str, Any]) -> nn.Module:
    """The encoder of ``modality`` from its keyword arguments."""
    try:
        return ENCODER_TYPES[modality](**arguments)
    except TypeError as error:
        raise ConfigError(f"config.{modality}: {error}") from None


def build_head(task: str, spec: dict[str, Any], d_model: int) -> nn.Module:
    """A head from ``{"type": ..., **arguments}``; a spec saved by ``config_dict`` (it holds
    ``d_model``) is rebuilt with ``from_config_dict``."""
    arguments = dict(spec)
    kind = arguments.pop("type")
    head_type = HEAD_TYPES.get(kind)
    if head_type is None:
        raise ConfigError(
            f"heads[{task!r}].type is {kind!r}; known types: {', '.join(sorted(HEAD_TYPES))}"
        )
    if "d_model" in arguments:
        return head_type.from_config_dict(arguments)
    try:
        return head_type(d_model=d_model, **arguments)
    except TypeError as error:
        raise ConfigError(f"heads[{task!r}]: {error}") from None


def head_spec(head: nn.Module) -> dict[str, Any]:
    """The spec :func:`build_head` rebuilds ``head`` from."""
    kind = next(name for name, kind in HEAD_TYPES.items() if type(head) is kind)
    return {"type": kind, **head.config_dict()}
