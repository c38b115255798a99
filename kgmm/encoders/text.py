"""Text encoder: any Hugging Face ``AutoModel`` checkpoint, mean-pooled."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoConfig, AutoModel, AutoTokenizer, PretrainedConfig, PreTrainedModel

from kgmm.encoders.freezing import freeze as freeze_module
from kgmm.encoders.output import EncoderOutput, masked_mean
from kgmm.errors import ConfigError, DataError
from kgmm.resources import default_text_model_path

TextItem = str | tuple[str, str]

# Where BERT-like models keep their stack of transformer blocks, most common first.
_LAYER_LIST_PATHS = ("encoder.layer", "encoder.layers", "layers", "transformer.layer", "layer")


class TextPreprocessor:
    """Tokenises a batch of texts (or ``(question, context)`` pairs) into padded tensors.

    Batches are padded to their longest item; every item is truncated to ``max_length`` tokens,
    a pair from its longer part. ``truncation_side="left"`` drops tokens from the start instead
    of the end (keeps the results at the end of a long abstract).
    """

    def __init__(self, tokenizer: Any, max_length: int, truncation_side: str = "right") -> None:
        if truncation_side not in ("right", "left"):
            raise ConfigError(f"truncation_side must be 'right' or 'left', not {truncation_side!r}")
        tokenizer.truncation_side = truncation_side
        self.tokenizer = tokenizer
        self.max_length = max_length

    def __call__(self, items: list[TextItem]) -> dict[str, torch.Tensor]:
        batch = [self._checked(index, item) for index, item in enumerate(items)]
        if not batch:
            raise DataError("cannot tokenise an empty batch of texts")
        encoded = self.tokenizer(
            batch,
            padding="longest",
            truncation=True,
            max_length=self.max_length,
            return_tensors="pt",
        )
        return {name: encoded[name] for name in self.tokenizer.model_input_names if name in encoded}

    @staticmethod
    def _checked(index: int, item: Any) -> TextItem:
        if isinstance(item, str):
            return item
        if (
            isinstance(item, (tuple, list))
            and len(item) == 2
            and all(isinstance(part, str) for part in item)
        ):
            return (item[0], item[1])
        raise DataError(
            f"text item {index} is {type(item).__name__} {item!r:.80}; "
            "expected a string or a (question, context) pair of strings"
        )


class TextEncoder(nn.Module):
    """A Hugging Face encoder whose tokens are returned with a mean-pooled sentence vector.

    Args:
        model_name_or_path: Hub name or local folder; ``None`` uses :func:`default_text_model_path`.
        freeze: Train no parameter of the encoder.
        trainable_top_layers: Train only the top N transformer layers (embeddings frozen).
        freeze_embeddings: Keep the token embedding matrix fixed and train the rest. It is
            the largest single weight (30522 x 384, 45% of MiniLM): its dense gradient and
            optimizer update cost a CPU training step more than its effect on accuracy
            (``benchmarks/train_speed.py --turns --levers train-embeddings``).
        max_length: Longest tokenised input; longer inputs are truncated.
        truncation_side: ``"right"`` (drop the end of a long input) or ``"left"`` (its start).
        config_overrides: Values that replace fields of the checkpoint's config. Overrides
            that change weight shapes (``hidden_size``) need ``random_init=True``; otherwise
            transformers re-initialises the mismatched weights.
        random_init: Build the architecture from the config and initialise it randomly,
            without reading the checkpoint's weights.

    Saving and rebuilding: :meth:`save_architecture` writes the Hugging Face ``config.json``
    (overrides included) and the tokenizer files into a folder; ``TextEncoder(folder,
    random_init=True)`` rebuilds the same architecture and tokenizer from that folder without
    any weights, ready for ``load_state_dict``.
    """

    def __init__(
        self,
        model_name_or_path: str | None = None,
        freeze: bool = False,
        trainable_top_layers: int | None = None,
        freeze_embeddings: bool = False,
        max_length: int = 512,
        config_overrides: dict[str, Any] | None = None,
        random_init: bool = False,
        truncation_side: str = "right",
    ) -> None:
        super().__init__()
        source = str(model_name_or_path) if model_name_or_path else default_text_model_path()
        config = _load_config(source, config_overrides or {})
        self.model = _load_model(source, config, random_init)
        self.model_name_or_path = source
        self.output_dim: int = config.hidden_size
        self.frozen = freeze
        limit = getattr(config, "max_position_embeddings", max_length)
        self.preprocessor = TextPreprocessor(
            AutoTokenizer.from_pretrained(source),
            max_length=min(max_length, limit),
            truncation_side=truncation_side,
        )
        if freeze:
            freeze_module(self.model)
        elif trainable_top_layers is not None:
            freeze_below_top_layers(self.model, trainable_top_layers)
        if freeze_embeddings:
            freeze_module(self.model.get_input_embeddings())
        pooler = getattr(self.model, "pooler", None)
        if isinstance(pooler, nn.Module):
            freeze_module(pooler)  # unused: the pooled vector is a mean over tokens

    @property
    def tokenizer(self) -> Any:
        return self.preprocessor.tokenizer

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor,
        token_type_ids: torch.Tensor | None = None,
    ) -> EncoderOutput:
        inputs = {"input_ids": input_ids, "attention_mask": attention_mask}
        if token_type_ids is not None:
            inputs["token_type_ids"] = token_type_ids
        tokens = self.model(**inputs).last_hidden_state
        mask = attention_mask.bool()
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))

    def train(self, mode: bool = True) -> TextEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self

    def save_architecture(self, directory: str | Path) -> None:
        """Write the model config and tokenizer files (no weights) into ``directory``."""
        self.model.config.save_pretrained(directory)
        self.tokenizer.save_pretrained(directory)


def find_layer_list(model: nn.Module) -> nn.ModuleList:
    """The stack of transformer layers of a BERT-like model."""
    for path in _LAYER_LIST_PATHS:
        candidate: Any = model
        for attribute in path.split("."):
            candidate = getattr(candidate, attribute, None)
        if isinstance(candidate, nn.ModuleList) and len(candidate) > 0:
            return candidate
    raise ConfigError(
        f"cannot find the transformer layers of {type(model).__name__} "
        f"(looked for {', '.join(_LAYER_LIST_PATHS)}); use freeze=True or leave "
        "trainable_top_layers unset"
    )


def freeze_below_top_layers(model: nn.Module, trainable_top_layers: int) -> None:
    """Freeze embeddings and every transformer layer except the top ``trainable_top_layers``.

    Parameters outside the layer stack that are not embeddings (a final norm) stay trainable.
    """
    layers = find_layer_list(model)
    if not 0 <= trainable_top_layers <= len(layers):
        raise ConfigError(
            f"trainable_top_layers={trainable_top_layers} but {type(model).__name__} has "
            f"{len(layers)} layers; choose a value from 0 to {len(layers)}"
        )
    top = layers[len(layers) - trainable_top_layers :]
    trainable = {id(parameter) for parameter in top.parameters()}
    in_layers = {id(parameter) for parameter in layers.parameters()}
    for name, parameter in model.named_parameters():
        outside_stack = id(parameter) not in in_layers and "embed" not in name
        parameter.requires_grad_(id(parameter) in trainable or outside_stack)


def _load_config(source: str, overrides: dict[str, Any]) -> PretrainedConfig:
    try:
        config = AutoConfig.from_pretrained(source)
    except OSError as error:
        raise ConfigError(f"cannot load a text model config from {source!r}: {error}") from error
    for key, value in overrides.items():
        if not hasattr(config, key):
            raise ConfigError(
                f"config_overrides key {key!r} is not a field of the {config.model_type} config"
            )
        setattr(config, key, value)
    return config


def _load_model(source: str, config: PretrainedConfig, random_init: bool) -> PreTrainedModel:
    """transformers picks SDPA attention where the architecture supports it, eager otherwise."""
    if random_init:
        return AutoModel.from_config(config)
    try:
        return AutoModel.from_pretrained(source, config=config)
    except (OSError, ValueError) as error:
        raise ConfigError(f"cannot load text model weights from {source!r}: {error}") from error
