"""Single- and multi-label classification of the pooled fused representation."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor

from kgmm.errors import ConfigError, DataError
from kgmm.heads.base import Head, HeadOutput, label_index, require_field
from kgmm.heads.mlp import build_mlp

if TYPE_CHECKING:
    from kgmm.fusion.output import FusionOutput


class ClassificationHead(Head):
    """An MLP over ``fused.pooled`` trained with cross-entropy, or BCE when ``multi_label``.

    Samples carry ``label``: one label string, or (multi-label) a string or a list of strings.
    """

    task_type: ClassVar[str] = "classification"

    def __init__(
        self,
        d_model: int,
        labels: Sequence[str],
        multi_label: bool = False,
        dropout: float = 0.1,
        hidden: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.labels = [str(label) for label in labels]
        if not self.labels or len(set(self.labels)) != len(self.labels):
            raise ConfigError(f"ClassificationHead needs distinct labels, got {self.labels}")
        self.d_model = d_model
        self.multi_label = multi_label
        self.dropout = dropout
        self.hidden = hidden
        self.label_smoothing = label_smoothing
        self.mlp = build_mlp(d_model, len(self.labels), hidden, dropout)

    def forward(self, fused: FusionOutput, labels: Tensor | None = None) -> HeadOutput:
        """``labels`` are class indices ``[B]``, or multi-hot ``[B, num_labels]`` floats."""
        logits = self.mlp(fused.pooled)
        if labels is None:
            return HeadOutput(logits=logits)
        if self.multi_label:
            loss = F.binary_cross_entropy_with_logits(logits, labels.to(logits.dtype))
        else:
            loss = F.cross_entropy(logits, labels, label_smoothing=self.label_smoothing)
        return HeadOutput(logits=logits, loss=loss)

    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        if not self.multi_label:
            indices = [
                label_index(require_field(s, "label", i, self.task_type), self.labels, "label", i)
                for i, s in enumerate(samples)
            ]
            return {"labels": torch.tensor(indices, dtype=torch.long)}
        multi_hot = torch.zeros(len(samples), len(self.labels))
        for i, sample in enumerate(samples):
            value = require_field(sample, "label", i, self.task_type)
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list):
                raise DataError(
                    f"sample {i}: field 'label' must be a label string or a list of them, "
                    f"got {value!r}"
                )
            for name in values:
                multi_hot[i, label_index(name, self.labels, "label", i)] = 1.0
        return {"labels": multi_hot}

    def decode(self, output: HeadOutput, threshold: float = 0.5) -> list:
        """Label strings; multi-label gives, per sample, the labels with probability > threshold."""
        if not self.multi_label:
            return [self.labels[i] for i in output.logits.argmax(dim=-1).tolist()]
        chosen = torch.sigmoid(output.logits) > threshold
        return [[self.labels[j] for j in row.nonzero().flatten().tolist()] for row in chosen]

    def config_dict(self) -> dict:
        return {
            "d_model": self.d_model,
            "labels": list(self.labels),
            "multi_label": self.multi_label,
            "dropout": self.dropout,
            "hidden": self.hidden,
            "label_smoothing": self.label_smoothing,
        }
