"""Reading, resampling and featurising audio into padded batches."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import soundfile
import torch
import torchaudio
from torch.nn.utils.rnn import pad_sequence

from kgmm.errors import ConfigError, DataError

AUDIO_KINDS = ("spectrogram", "wav2vec2", "hubert")
# wav2vec 2.0 / HuBERT feature extractors see 400 samples (25 ms at 16 kHz) per output frame.
SSL_MIN_SAMPLES = 400


class AudioPreprocessor:
    """Turns a list of audio items into the keyword arguments of :class:`AudioEncoder`.

    Items may be file paths (WAV/FLAC/OGG, read with soundfile), ``(waveform, sample_rate)``
    pairs, or 1-D waveforms already at ``sample_rate``. Multi-channel audio is averaged to mono
    and other rates are resampled.

    ``kind="spectrogram"`` gives ``{"features": [B, T, n_mels], "feature_mask": [B, T]}``:
    log-Mel frames (25 ms window, 10 ms hop), normalised per utterance and Mel bin.
    ``"wav2vec2"``/``"hubert"`` give ``{"waveforms": [B, L], "lengths": [B]}``.
    Batches are padded to their longest item.
    """

    def __init__(self, kind: str = "spectrogram", sample_rate: int = 16000, n_mels: int = 64):
        if kind not in AUDIO_KINDS:
            choices = ", ".join(AUDIO_KINDS)
            raise ConfigError(f"unknown audio kind {kind!r}; choose one of {choices}")
        self.kind = kind
        self.sample_rate = sample_rate
        self.n_mels = n_mels
        self.window = round(0.025 * sample_rate)
        self.mel = torchaudio.transforms.MelSpectrogram(
            sample_rate=sample_rate,
            n_fft=self.window,
            win_length=self.window,
            hop_length=round(0.010 * sample_rate),
            n_mels=n_mels,
        )

    def __call__(self, items: list[Any]) -> dict[str, torch.Tensor]:
        if not items:
            raise DataError("cannot preprocess an empty batch of audio")
        waveforms = [load_waveform(item, self.sample_rate) for item in items]
        if self.kind == "spectrogram":
            features = [self.log_mel(waveform) for waveform in waveforms]
            padded, mask = _pad(features)
            return {"features": padded, "feature_mask": mask}
        waveforms = [_at_least(waveform, SSL_MIN_SAMPLES) for waveform in waveforms]
        padded, mask = _pad(waveforms)
        return {"waveforms": padded, "lengths": mask.sum(dim=1)}

    def log_mel(self, waveform: torch.Tensor) -> torch.Tensor:
        """``[T, n_mels]`` log-Mel frames of a mono waveform, normalised per Mel bin."""
        frames = torch.log(self.mel(_at_least(waveform, self.window)) + 1e-6).T
        mean = frames.mean(dim=0, keepdim=True)
        std = frames.std(dim=0, unbiased=False, keepdim=True)
        return (frames - mean) / (std + 1e-5)


def load_waveform(item: Any, sample_rate: int) -> torch.Tensor:
    """A mono float32 waveform at ``sample_rate`` from a path, (waveform, rate) pair or waveform."""
    if isinstance(item, (str, Path)):
        waveform, source_rate = _read(Path(item))
    elif isinstance(item, tuple) and len(item) == 2:
        waveform, source_rate = _mono(item[0]), int(item[1])
    else:
        waveform, source_rate = _mono(item), sample_rate
    if waveform.numel() == 0:
        raise DataError(f"audio item {_describe(item)} holds no samples")
    if source_rate != sample_rate:
        waveform = torchaudio.functional.resample(waveform, source_rate, sample_rate)
    return waveform


def _read(path: Path) -> tuple[torch.Tensor, int]:
    try:
        samples, rate = soundfile.read(path, dtype="float32", always_2d=True)
    except (OSError, RuntimeError, TypeError) as error:
        raise DataError(f"cannot read audio file {path}: {error}") from error
    return torch.from_numpy(samples.mean(axis=1)), rate


def _mono(waveform: Any) -> torch.Tensor:
    """1-D float tensor; 2-D input is averaged over its shorter axis (the channels)."""
    if isinstance(waveform, np.ndarray):
        waveform = torch.from_numpy(np.ascontiguousarray(waveform))
    if not isinstance(waveform, torch.Tensor):
        raise DataError(
            f"cannot use a {type(waveform).__name__} as audio; pass a file path, a waveform "
            "array/tensor, or a (waveform, sample_rate) pair"
        )
    waveform = waveform.detach().cpu().float()
    if waveform.ndim == 2:
        waveform = waveform.mean(dim=0 if waveform.shape[0] <= waveform.shape[1] else 1)
    if waveform.ndim != 1:
        raise DataError(f"audio waveform has shape {tuple(waveform.shape)}; expected 1-D or 2-D")
    return waveform


def _at_least(waveform: torch.Tensor, length: int) -> torch.Tensor:
    return torch.nn.functional.pad(waveform, (0, max(0, length - waveform.shape[0])))


def _pad(sequences: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Stack along a new batch axis, zero-padding dim 0 to the longest; mask marks real steps."""
    lengths = torch.tensor([sequence.shape[0] for sequence in sequences])
    mask = torch.arange(int(lengths.max())) < lengths[:, None]
    return pad_sequence(sequences, batch_first=True), mask


def _describe(item: Any) -> str:
    return str(item) if isinstance(item, (str, Path)) else type(item).__name__
