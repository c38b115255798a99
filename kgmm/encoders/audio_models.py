"""Audio models that map padded inputs to token sequences with masks."""

from __future__ import annotations

import math
from typing import Any

import torch
import torchaudio
from torch import nn
from torchaudio.models import Wav2Vec2Model

from kgmm.errors import ConfigError

# Two valid 3x3 convolutions with stride 2 need 7 input frames to give one output frame.
_MIN_FRAMES = 7


def subsampled_lengths(lengths: torch.Tensor) -> torch.Tensor:
    """Frames left after two valid stride-2, kernel-3 convolutions (at least one)."""
    return (((lengths - 1) // 2 - 1) // 2).clamp(min=1)


def sinusoidal_positions(length: int, dim: int, device: torch.device) -> torch.Tensor:
    """``[length, dim]`` fixed sine/cosine position encodings (Vaswani et al., 2017)."""
    position = torch.arange(length, device=device, dtype=torch.float32).unsqueeze(1)
    frequency = torch.exp(
        torch.arange(0, dim, 2, device=device, dtype=torch.float32) * (-math.log(10000.0) / dim)
    )
    encoding = torch.zeros(length, dim, device=device)
    encoding[:, 0::2] = torch.sin(position * frequency)
    encoding[:, 1::2] = torch.cos(position * frequency)
    return encoding


class ConvSubsampling(nn.Module):
    """Two stride-2 convolutions over (time, Mel): 4x fewer frames, each projected to d_model.

    The convolutions are unpadded, so a kept frame never sees padding frames.
    """

    def __init__(self, n_mels: int, d_model: int) -> None:
        super().__init__()
        if n_mels < _MIN_FRAMES:
            raise ConfigError(f"n_mels={n_mels} is too small; use at least {_MIN_FRAMES}")
        self.convs = nn.Sequential(
            nn.Conv2d(1, d_model, kernel_size=3, stride=2),
            nn.ReLU(),
            nn.Conv2d(d_model, d_model, kernel_size=3, stride=2),
            nn.ReLU(),
        )
        mel_bins = ((n_mels - 1) // 2 - 1) // 2
        self.project = nn.Linear(d_model * mel_bins, d_model)

    def forward(
        self, features: torch.Tensor, feature_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T', d_model]`` tokens and the number of real tokens of each sample."""
        short_by = _MIN_FRAMES - features.shape[1]
        if short_by > 0:
            features = nn.functional.pad(features, (0, 0, 0, short_by))
        grid = self.convs(features.unsqueeze(1))
        batch, channels, frames, mel_bins = grid.shape
        tokens = self.project(grid.transpose(1, 2).reshape(batch, frames, channels * mel_bins))
        return tokens, subsampled_lengths(feature_mask.sum(dim=1))


class SpectrogramTransformer(nn.Module):
    """Log-Mel frames -> conv subsampling -> sinusoidal positions -> pre-norm Transformer."""

    def __init__(
        self, n_mels: int, d_model: int, num_layers: int, num_heads: int, dropout: float = 0.1
    ) -> None:
        super().__init__()
        if d_model % 2 or d_model % num_heads:
            raise ConfigError(
                f"d_model={d_model} must be even and divisible by num_heads={num_heads}"
            )
        self.subsampling = ConvSubsampling(n_mels, d_model)
        self.dropout = nn.Dropout(dropout)
        layer = nn.TransformerEncoderLayer(
            d_model,
            num_heads,
            dim_feedforward=4 * d_model,
            dropout=dropout,
            batch_first=True,
            norm_first=True,
        )
        self.transformer = nn.TransformerEncoder(
            layer, num_layers, norm=nn.LayerNorm(d_model), enable_nested_tensor=False
        )

    def forward(
        self, features: torch.Tensor, feature_mask: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``[B, T', d_model]`` tokens and the number of real tokens of each sample."""
        tokens, lengths = self.subsampling(features, feature_mask)
        positions = sinusoidal_positions(tokens.shape[1], tokens.shape[2], tokens.device)
        tokens = self.dropout(tokens + positions.to(tokens.dtype))
        padding = torch.arange(tokens.shape[1], device=tokens.device) >= lengths.unsqueeze(1)
        return self.transformer(tokens, src_key_padding_mask=padding), lengths


def wav2vec2_architecture(kind: str, model_config: dict[str, Any] | None) -> Wav2Vec2Model:
    """A randomly initialised torchaudio wav2vec 2.0 / HuBERT model.

    ``model_config`` holds the keyword arguments of ``torchaudio.models.wav2vec2_model``;
    ``None`` gives the base architecture of ``kind``.
    """
    if model_config is None:
        if kind == "hubert":
            return torchaudio.models.hubert_base()
        return torchaudio.models.wav2vec2_base()
    try:
        return torchaudio.models.wav2vec2_model(**model_config)
    except TypeError as error:
        raise ConfigError(
            f"model_config for kind={kind!r} must hold the keyword arguments of "
            f"torchaudio.models.wav2vec2_model: {error}"
        ) from error


def wav2vec2_output_dim(model: Wav2Vec2Model) -> int:
    return model.encoder.feature_projection.projection.out_features
