"""Multi-head attention built from plain ``nn.Linear`` projections.

The projections are named ``q_proj``, ``k_proj``, ``v_proj`` and ``out_proj`` so PEFT can
target them by name and opacus can compute per-sample gradients for them; the attention itself
runs through :func:`torch.nn.functional.scaled_dot_product_attention`.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class MultiHeadAttention(nn.Module):
    """Attention from ``query [B, T, d]`` to ``key_value [B, S, d]`` with a key padding mask."""

    def __init__(self, d_model: int, num_heads: int, dropout: float = 0.0) -> None:
        super().__init__()
        self.num_heads = num_heads
        self.head_dim = d_model // num_heads
        self.dropout = dropout
        self.q_proj = nn.Linear(d_model, d_model)
        self.k_proj = nn.Linear(d_model, d_model)
        self.v_proj = nn.Linear(d_model, d_model)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(
        self, query: Tensor, key_value: Tensor, key_mask: Tensor, return_weights: bool = False
    ) -> tuple[Tensor, Tensor | None]:
        """Attend; ``key_mask [B, S]`` is True for keys that take part.

        Every row of ``key_mask`` must have at least one True entry (callers guard empty rows).
        With ``return_weights`` the head-averaged attention probabilities ``[B, T, S]`` are
        returned as well, in float32 and detached (they explain, they are not trained on).
        """
        batch, length, d_model = query.shape
        q = self._split_heads(self.q_proj(query))
        k = self._split_heads(self.k_proj(key_value))
        v = self._split_heads(self.v_proj(key_value))
        mask = key_mask[:, None, None, :]
        attended = F.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, dropout_p=self.dropout if self.training else 0.0
        )
        out = self.out_proj(attended.transpose(1, 2).reshape(batch, length, d_model))
        if not return_weights:
            return out, None
        with torch.no_grad(), torch.autocast(query.device.type, enabled=False):
            logits = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(self.head_dim)
            weights = logits.masked_fill(~mask, float("-inf")).softmax(-1).mean(1)
        return out, weights

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, length, _ = x.shape
        return x.view(batch, length, self.num_heads, self.head_dim).transpose(1, 2)
