"""Sequence-to-sequence translation: a Transformer decoder over the fused tokens and KG entities."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, ClassVar

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import Tensor, nn

from kgmm.errors import ConfigError, DataError
from kgmm.heads.base import Head, HeadOutput, require_field
from kgmm.heads.beam_search import beam_search
from kgmm.heads.decoder import DecoderLayer, KeyValue
from kgmm.heads.target_tokenizer import BOS, EOS, PAD

if TYPE_CHECKING:
    from kgmm.fusion.output import FusionOutput


class TranslationHead(Head):
    """Generate target text conditioned on the fused representation.

    The decoder cross-attends over ``concat(fused.tokens, fused.entity_states)`` with
    ``concat(fused.mask, fused.entity_mask)``, so it reads the KG entities directly. Training is
    teacher-forced cross-entropy with label smoothing (pad ignored); :meth:`generate` runs
    batched beam search with cached self-attention keys/values.

    ``tokenizer`` is a ``tokenizers.Tokenizer`` (see ``train_target_tokenizer``) or a Hugging
    Face fast tokenizer; ``vocab_size`` and the pad/BOS/EOS ids default to its values. Without
    a tokenizer, samples give ``target`` as a list of token ids and decoding returns id lists.
    """

    task_type: ClassVar[str] = "translation"

    def __init__(
        self,
        d_model: int,
        vocab_size: int | None = None,
        tokenizer: Any = None,
        num_layers: int = 3,
        num_heads: int = 4,
        ffn_dim: int = 1024,
        dropout: float = 0.1,
        max_length: int = 128,
        pad_id: int | None = None,
        bos_id: int | None = None,
        eos_id: int | None = None,
        tie_embeddings: bool = True,
        label_smoothing: float = 0.1,
        beam_size: int = 4,
        length_penalty: float = 0.6,
    ) -> None:
        super().__init__()
        self.tokenizer, defaults = _resolve_tokenizer(tokenizer)
        self.vocab_size = vocab_size if vocab_size is not None else defaults["vocab_size"]
        self.pad_id = pad_id if pad_id is not None else defaults["pad_id"]
        self.bos_id = bos_id if bos_id is not None else defaults["bos_id"]
        self.eos_id = eos_id if eos_id is not None else defaults["eos_id"]
        if self.vocab_size is None:
            raise ConfigError("TranslationHead needs vocab_size or a tokenizer")
        for name in ("pad_id", "bos_id", "eos_id"):
            value = getattr(self, name)
            if value is None or not 0 <= value < self.vocab_size:
                raise ConfigError(
                    f"TranslationHead {name}={value!r} must be a token id below vocab_size "
                    f"{self.vocab_size} (pass it explicitly if the tokenizer has no such token)"
                )
        if d_model % num_heads:
            raise ConfigError(f"d_model {d_model} must be divisible by num_heads {num_heads}")
        self.d_model = d_model
        self.num_layers = num_layers
        self.num_heads = num_heads
        self.ffn_dim = ffn_dim
        self.dropout = dropout
        self.max_length = max_length
        self.tie_embeddings = tie_embeddings
        self.label_smoothing = label_smoothing
        self.beam_size = beam_size
        self.length_penalty = length_penalty

        self.token_embedding = nn.Embedding(self.vocab_size, d_model)
        nn.init.normal_(self.token_embedding.weight, std=d_model**-0.5)
        self.register_buffer(
            "position_encoding", sinusoidal_positions(max_length, d_model), persistent=False
        )
        self.memory_norm = nn.LayerNorm(d_model)
        self.layers = nn.ModuleList(
            DecoderLayer(d_model, num_heads, ffn_dim, dropout) for _ in range(num_layers)
        )
        self.final_norm = nn.LayerNorm(d_model)
        self.embedding_dropout = nn.Dropout(dropout)
        self.output = nn.Linear(d_model, self.vocab_size, bias=False)
        if tie_embeddings:
            self.output.weight = self.token_embedding.weight

    def _memory(self, fused: FusionOutput) -> tuple[list[KeyValue], Tensor]:
        """Per-layer cross-attention keys/values and the ``[B, 1, 1, M]`` memory mask."""
        memory = torch.cat([fused.tokens, fused.entity_states], dim=1)
        mask = torch.cat([fused.mask, fused.entity_mask], dim=1).bool()
        if memory.shape[1] == 0:
            raise DataError("TranslationHead got no fused tokens and no entities to attend to")
        mask = mask | ~mask.any(dim=1, keepdim=True)  # a sample with nothing attends to zeros
        memory = self.memory_norm(memory)
        return [layer.cross_attn.keys_values(memory) for layer in self.layers], mask[:, None, None]

    def _embed(self, tokens: Tensor, start: int) -> Tensor:
        end = start + tokens.shape[1]
        if end > self.max_length:
            raise DataError(f"target of {end} tokens exceeds max_length {self.max_length}")
        positions = torch.arange(start, end, device=tokens.device)
        embedded = self.token_embedding(tokens) * math.sqrt(self.d_model)
        return self.embedding_dropout(embedded + self.position_encoding[positions])

    def _decode(
        self,
        tokens: Tensor,
        start: int,
        memory_kv: list[KeyValue],
        memory_mask: Tensor,
        cache: list[KeyValue] | None,
    ) -> tuple[Tensor, list[KeyValue]]:
        """Logits ``[B, T, V]`` for ``tokens`` placed at ``start``, and the new cache."""
        x = self._embed(tokens, start)
        new_cache = []
        for i, layer in enumerate(self.layers):
            x, kv = layer(x, memory_kv[i], memory_mask, None if cache is None else cache[i])
            new_cache.append(kv)
        return self.output(self.final_norm(x)), new_cache

    def forward(self, fused: FusionOutput, target_ids: Tensor | None = None) -> HeadOutput:
        """Teacher-forced logits ``[B, L - 1, V]`` and loss, or :meth:`generate` without targets."""
        if target_ids is None:
            return self.generate(fused)
        memory_kv, memory_mask = self._memory(fused)
        logits, _ = self._decode(target_ids[:, :-1], 0, memory_kv, memory_mask, None)
        loss = F.cross_entropy(
            logits.flatten(0, 1).float(),
            target_ids[:, 1:].flatten(),
            ignore_index=self.pad_id,
            label_smoothing=self.label_smoothing,
        )
        return HeadOutput(logits=logits, loss=loss)

    @torch.no_grad()
    def generate(
        self,
        fused: FusionOutput,
        beam_size: int | None = None,
        max_length: int | None = None,
        length_penalty: float | None = None,
    ) -> HeadOutput:
        """Beam search (greedy when ``beam_size=1``); call ``eval()`` first to turn off dropout.

        Returns ``predictions [B, L]`` (generated ids without BOS, ending in EOS then pad) and
        ``logits [B]``, the length-normalised log-probability of each sequence.
        ``max_length`` counts generated tokens (EOS included) and is capped at the head's
        ``max_length - 1``.
        """
        beam_size = beam_size or self.beam_size
        limit = self.max_length - 1
        max_new = min(max_length or limit, limit)
        alpha = self.length_penalty if length_penalty is None else length_penalty
        memory_kv, memory_mask = self._memory(fused)
        memory_kv = [
            (k.repeat_interleave(beam_size, 0), v.repeat_interleave(beam_size, 0))
            for k, v in memory_kv
        ]
        memory_mask = memory_mask.repeat_interleave(beam_size, 0)

        def step(last: Tensor, position: int, cache: list[KeyValue] | None):
            logits, cache = self._decode(last, position, memory_kv, memory_mask, cache)
            return logits[:, -1].float().log_softmax(dim=-1), cache

        def reorder(cache: list[KeyValue], rows: Tensor) -> list[KeyValue]:
            return [(k[rows], v[rows]) for k, v in cache]

        ids, scores = beam_search(
            step,
            reorder,
            None,
            batch_size=fused.tokens.shape[0],
            beam_size=beam_size,
            bos_id=self.bos_id,
            eos_id=self.eos_id,
            pad_id=self.pad_id,
            max_new_tokens=max_new,
            length_penalty=alpha,
            device=fused.tokens.device,
        )
        return HeadOutput(logits=scores, predictions=ids)

    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """``target_ids [B, L]``: ``<s> target </s>`` padded to the longest, cut at max_length."""
        rows = [self._target_ids(sample, i) for i, sample in enumerate(samples)]
        keep = self.max_length - 2
        rows = [[self.bos_id, *ids[:keep], self.eos_id] for ids in rows]
        width = max(len(row) for row in rows)
        return {
            "target_ids": torch.tensor(
                [row + [self.pad_id] * (width - len(row)) for row in rows], dtype=torch.long
            )
        }

    def _target_ids(self, sample: dict, index: int) -> list[int]:
        target = require_field(sample, "target", index, self.task_type)
        if isinstance(target, str):
            if self.tokenizer is None:
                raise DataError(
                    f"sample {index}: field 'target' is text but the translation head has no "
                    "tokenizer; give it one or pass token ids"
                )
            return self.tokenizer.encode(target, add_special_tokens=False).ids
        if isinstance(target, list) and all(
            isinstance(t, int) and 0 <= t < self.vocab_size for t in target
        ):
            return target
        raise DataError(
            f"sample {index}: field 'target' must be a string or a list of token ids below "
            f"{self.vocab_size}, got {target!r}"
        )

    def decode(self, output: HeadOutput) -> list:
        """Detokenised strings (token id lists without a tokenizer), cut at the first EOS.

        Uses ``output.predictions`` from :meth:`generate`, else the argmax of the logits.
        """
        ids = output.predictions if output.predictions is not None else output.logits.argmax(-1)
        special = {self.pad_id, self.bos_id}
        sequences = []
        for row in ids.tolist():
            if self.eos_id in row:
                row = row[: row.index(self.eos_id)]
            sequences.append([t for t in row if t not in special])
        if self.tokenizer is None:
            return sequences
        return self.tokenizer.decode_batch(sequences, skip_special_tokens=True)

    def config_dict(self) -> dict:
        return {
            "d_model": self.d_model,
            "vocab_size": self.vocab_size,
            "tokenizer": None if self.tokenizer is None else self.tokenizer.to_str(),
            "num_layers": self.num_layers,
            "num_heads": self.num_heads,
            "ffn_dim": self.ffn_dim,
            "dropout": self.dropout,
            "max_length": self.max_length,
            "pad_id": self.pad_id,
            "bos_id": self.bos_id,
            "eos_id": self.eos_id,
            "tie_embeddings": self.tie_embeddings,
            "label_smoothing": self.label_smoothing,
            "beam_size": self.beam_size,
            "length_penalty": self.length_penalty,
        }

    @classmethod
    def from_config_dict(cls, config: dict) -> TranslationHead:
        config = dict(config)
        if isinstance(config.get("tokenizer"), str):
            config["tokenizer"] = Tokenizer.from_str(config["tokenizer"])
        return cls(**config)


def sinusoidal_positions(length: int, dim: int) -> Tensor:
    """The ``[length, dim]`` sine/cosine position table of Vaswani et al. (2017)."""
    positions = torch.arange(length, dtype=torch.float32)[:, None]
    frequencies = torch.exp(torch.arange(0, dim, 2, dtype=torch.float32) * (-math.log(1e4) / dim))
    table = torch.zeros(length, dim)
    table[:, 0::2] = torch.sin(positions * frequencies)
    table[:, 1::2] = torch.cos(positions * frequencies[: dim // 2])
    return table


def _plain_copy(tokenizer: Tokenizer) -> Tokenizer:
    """A copy that neither pads nor truncates (the head adds BOS/EOS and pads batches itself)."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    copy.no_padding()
    copy.no_truncation()
    return copy


def _resolve_tokenizer(tokenizer: Any) -> tuple[Tokenizer | None, dict]:
    """The ``tokenizers.Tokenizer`` behind ``tokenizer`` and its vocab size and special ids."""
    if tokenizer is None:
        return None, {"vocab_size": None, "pad_id": 0, "bos_id": 1, "eos_id": 2}
    if isinstance(tokenizer, Tokenizer):
        return _plain_copy(tokenizer), {
            "vocab_size": tokenizer.get_vocab_size(),
            "pad_id": tokenizer.token_to_id(PAD),
            "bos_id": tokenizer.token_to_id(BOS),
            "eos_id": tokenizer.token_to_id(EOS),
        }
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if not isinstance(backend, Tokenizer):
        raise ConfigError(
            "TranslationHead tokenizer must be a tokenizers.Tokenizer or a Hugging Face fast "
            f"tokenizer, got {type(tokenizer).__name__}"
        )

    def first_id(*names: str) -> int | None:
        ids = [getattr(tokenizer, name, None) for name in names]
        return next((i for i in ids if i is not None), None)

    return _plain_copy(backend), {
        "vocab_size": len(tokenizer),
        "pad_id": first_id("pad_token_id"),
        "bos_id": first_id("bos_token_id", "cls_token_id"),
        "eos_id": first_id("eos_token_id", "sep_token_id"),
    }
