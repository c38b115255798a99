"""A pre-norm Transformer decoder whose self-attention keys/values can be cached step by step."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

KeyValue = tuple[Tensor, Tensor]


class Attention(nn.Module):
    """Multi-head attention through ``F.scaled_dot_product_attention``.

    Keys and values are computed by :meth:`keys_values` so callers can cache them.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.dropout = dropout
        self.query = nn.Linear(d_model, d_model)
        self.key_value = nn.Linear(d_model, 2 * d_model)
        self.out = nn.Linear(d_model, d_model)

    def _split(self, x: Tensor) -> Tensor:
        batch, length, width = x.shape
        return x.view(batch, length, self.num_heads, width // self.num_heads).transpose(1, 2)

    def keys_values(self, x: Tensor) -> KeyValue:
        """``[B, T, d]`` -> keys and values, each ``[B, heads, T, d / heads]``."""
        keys, values = self.key_value(x).chunk(2, dim=-1)
        return self._split(keys), self._split(values)

    def forward(
        self, x: Tensor, kv: KeyValue, mask: Tensor | None = None, is_causal: bool = False
    ) -> Tensor:
        """Attend from ``x [B, T, d]``; ``mask`` is bool, True where a key may be attended."""
        attended = F.scaled_dot_product_attention(
            self._split(self.query(x)),
            *kv,
            attn_mask=mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )
        batch, _, length, _ = attended.shape
        return self.out(attended.transpose(1, 2).reshape(batch, length, -1))


class DecoderLayer(nn.Module):
    """Causal self-attention, cross-attention over the memory, feed-forward (all pre-norm)."""

    def __init__(self, d_model: int, num_heads: int, ffn_dim: int, dropout: float) -> None:
        super().__init__()
        self.self_attn = Attention(d_model, num_heads, dropout)
        self.cross_attn = Attention(d_model, num_heads, dropout)
        self.ffn = nn.Sequential(
            nn.Linear(d_model, ffn_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(ffn_dim, d_model)
        )
        self.self_norm = nn.LayerNorm(d_model)
        self.cross_norm = nn.LayerNorm(d_model)
        self.ffn_norm = nn.LayerNorm(d_model)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self, x: Tensor, memory_kv: KeyValue, memory_mask: Tensor, cache: KeyValue | None
    ) -> tuple[Tensor, KeyValue]:
        """One layer over ``x [B, T, d]``; returns the output and the self-attention keys/values.

        Without ``cache`` ``x`` is a whole prefix and attention is causal; with it, ``x`` is the
        next single position and attends to the cached prefix plus itself.
        """
        h = self.self_norm(x)
        keys, values = self.self_attn.keys_values(h)
        if cache is not None:
            keys = torch.cat([cache[0], keys], dim=2)
            values = torch.cat([cache[1], values], dim=2)
        x = x + self.dropout(self.self_attn(h, (keys, values), is_causal=cache is None))
        x = x + self.dropout(self.cross_attn(self.cross_norm(x), memory_kv, memory_mask))
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, (keys, values)
