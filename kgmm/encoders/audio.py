"""Audio encoder: log-Mel Transformer, or a wav2vec 2.0 / HuBERT model."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from kgmm.encoders.audio_models import (
    SpectrogramTransformer,
    wav2vec2_architecture,
    wav2vec2_output_dim,
)
from kgmm.encoders.audio_preprocessor import AudioPreprocessor
from kgmm.encoders.freezing import freeze as freeze_module
from kgmm.encoders.output import EncoderOutput, masked_mean
from kgmm.encoders.weights import load_weights_into
from kgmm.errors import ConfigError


class AudioEncoder(nn.Module):
    """Encodes padded audio into frame tokens with a mask and a mean-pooled vector.

    Args:
        kind: ``"spectrogram"`` (log-Mel features -> 4x conv subsampling -> Transformer),
            ``"wav2vec2"`` or ``"hubert"`` (torchaudio models on raw waveforms).
        sample_rate: Rate every input is resampled to.
        n_mels, d_model, num_layers, num_heads: Size of the spectrogram model.
        weights: Path of a ``.safetensors``/``.pth`` state dict of ``encoder.model`` (for
            wav2vec2/hubert, a torchaudio ``Wav2Vec2Model`` without ``aux``); ``None``
            initialises randomly.
        freeze: Train no parameter of the encoder (it also stays in eval mode).
        model_config: For wav2vec2/hubert, keyword arguments of
            ``torchaudio.models.wav2vec2_model``; ``None`` builds the base architecture.

    The base wav2vec2/hubert architectures group-normalise the first convolution over the
    whole padded waveform, so padding can shift their outputs slightly; the spectrogram model
    and ``extractor_mode="layer_norm"`` configs are unaffected by padding.
    """

    def __init__(
        self,
        kind: str = "spectrogram",
        sample_rate: int = 16000,
        n_mels: int = 64,
        d_model: int = 128,
        num_layers: int = 2,
        num_heads: int = 4,
        weights: str | None = None,
        freeze: bool = False,
        model_config: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.preprocessor = AudioPreprocessor(kind, sample_rate, n_mels)
        self.kind = kind
        if kind == "spectrogram" and model_config is not None:
            raise ConfigError("model_config applies to kind='wav2vec2' or 'hubert' only")
        if kind == "spectrogram":
            self.model: nn.Module = SpectrogramTransformer(n_mels, d_model, num_layers, num_heads)
            self.output_dim: int = d_model
        else:
            self.model = wav2vec2_architecture(kind, model_config)
            self.output_dim = wav2vec2_output_dim(self.model)
        if weights is not None:
            load_weights_into(self.model, weights)
        self.frozen = freeze
        if freeze:
            freeze_module(self.model)

    def forward(
        self,
        features: torch.Tensor | None = None,
        feature_mask: torch.Tensor | None = None,
        waveforms: torch.Tensor | None = None,
        lengths: torch.Tensor | None = None,
    ) -> EncoderOutput:
        """Takes ``features``/``feature_mask`` (spectrogram) or ``waveforms``/``lengths``."""
        if self.kind == "spectrogram":
            inputs = (features, feature_mask)
            expected = "features and feature_mask"
        else:
            inputs = (waveforms, lengths)
            expected = "waveforms and lengths"
        if inputs[0] is None or inputs[1] is None:
            raise ConfigError(
                f"AudioEncoder(kind={self.kind!r}) needs {expected}, as its preprocessor gives"
            )
        tokens, lengths = self.model(*inputs)
        mask = torch.arange(tokens.shape[1], device=tokens.device) < lengths.unsqueeze(1)
        return EncoderOutput(tokens=tokens, mask=mask, pooled=masked_mean(tokens, mask))

    def train(self, mode: bool = True) -> AudioEncoder:
        super().train(mode)
        if self.frozen:
            self.model.eval()
        return self
