"""Task heads: each turns a :class:`kgmm.fusion.FusionOutput` into task scores and a loss."""

from __future__ import annotations

from kgmm.errors import ConfigError
from kgmm.heads.base import Head, HeadOutput
from kgmm.heads.classification import ClassificationHead
from kgmm.heads.question_answering import MultipleChoiceHead, QuestionAnsweringHead
from kgmm.heads.recommendation import RecommendationHead
from kgmm.heads.target_tokenizer import train_target_tokenizer
from kgmm.heads.translation import TranslationHead

HEAD_CLASSES: dict[str, type[Head]] = {
    "classification": ClassificationHead,
    "qa": QuestionAnsweringHead,
    "multiple_choice": MultipleChoiceHead,
    "translation": TranslationHead,
    "recommendation": RecommendationHead,
}
"""The ``type`` names a head spec in ``FusedConfig.heads`` uses."""


def head_type(name: str) -> type[Head]:
    """The head class for a spec's ``type``; an unknown name is a :class:`ConfigError`."""
    if name not in HEAD_CLASSES:
        raise ConfigError(f"unknown head type {name!r}; expected one of {sorted(HEAD_CLASSES)}")
    return HEAD_CLASSES[name]


def head_config(head: Head) -> dict:
    """``{"type": name, **head.config_dict()}``: JSON that :func:`build_head` reads."""
    name = next(n for n, cls in HEAD_CLASSES.items() if type(head) is cls)
    return {"type": name, **head.config_dict()}


def build_head(config: dict) -> Head:
    """Rebuild a head (fresh weights) from :func:`head_config`."""
    settings = dict(config)
    return head_type(settings.pop("type", None)).from_config_dict(settings)


__all__ = [
    "HEAD_CLASSES",
    "ClassificationHead",
    "Head",
    "HeadOutput",
    "MultipleChoiceHead",
    "QuestionAnsweringHead",
    "RecommendationHead",
    "TranslationHead",
    "build_head",
    "head_type",
    "head_config",
    "train_target_tokenizer",
]
