"""One fusion layer: self-attention over modality tokens, gated cross-attention to entities, FFN."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from kgmm.fusion.attention import MultiHeadAttention


class TanhGate(nn.Module):
    """Scales its input by ``tanh(gate)``, a learned scalar that starts at exactly 0.

    At initialisation the gated branch adds exact zeros (Flamingo-style), so a model with
    knowledge switched on computes the same numbers as one without it.
    """

    def __init__(self) -> None:
        super().__init__()
        self.gate = nn.Parameter(torch.zeros(()))

    def forward(self, x: Tensor) -> Tensor:
        return torch.tanh(self.gate) * x

    def value(self) -> float:
        """Current ``tanh(gate)``."""
        return float(torch.tanh(self.gate.detach()))


class FeedForward(nn.Module):
    """Position-wise two-layer MLP with GELU."""

    def __init__(self, d_model: int, dropout: float, expansion: int = 4) -> None:
        super().__init__()
        self.fc1 = nn.Linear(d_model, expansion * d_model)
        self.fc2 = nn.Linear(expansion * d_model, d_model)
        self.activation = nn.GELU()
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor) -> Tensor:
        return self.fc2(self.dropout(self.activation(self.fc1(x))))


class FusionLayer(nn.Module):
    """Pre-norm block: self-attention, gated cross-attention to entities, feed-forward.

    ``x += SelfAttn(LN(x))``; ``x += tanh(gate) * CrossAttn(LN(x), entities)``; ``x += FFN(LN(x))``.
    """

    def __init__(self, d_model: int, num_heads: int, dropout: float) -> None:
        super().__init__()
        self.self_attn_norm = nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn_norm = nn.LayerNorm(d_model)
        self.cross_attn = MultiHeadAttention(d_model, num_heads, dropout)
        self.cross_attn_gate = TanhGate()
        self.ffn_norm = nn.LayerNorm(d_model)
        self.ffn = FeedForward(d_model, dropout)
        self.dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: Tensor,
        token_mask: Tensor,
        entity_states: Tensor | None = None,
        entity_mask: Tensor | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Return the new tokens and the cross-attention weights ``[B, T, E]`` (or None).

        ``token_mask`` must have a True entry in every row. Without ``entity_states`` the
        cross-attention is skipped entirely. Rows of ``entity_mask`` that are all False get an
        exact zero cross-attention contribution and zero weights.
        """
        normed = self.self_attn_norm(x)
        x = x + self.dropout(self.self_attn(normed, normed, token_mask)[0])
        weights = None
        if entity_states is not None and entity_mask is not None:
            has_entities = entity_mask.any(dim=1)
            key_mask = entity_mask | ~has_entities[:, None]
            attended, weights = self.cross_attn(
                self.cross_attn_norm(x), entity_states, key_mask, return_weights=True
            )
            keep = has_entities[:, None, None]
            attended = torch.where(keep, self.dropout(attended), torch.zeros_like(attended))
            weights = weights * keep
            x = x + self.cross_attn_gate(attended)
        x = x + self.dropout(self.ffn(self.ffn_norm(x)))
        return x, weights
