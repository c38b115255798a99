"""Question answering over a fixed answer set (PubMedQA) or per-question options (MedQA)."""

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


class QuestionAnsweringHead(Head):
    """Classify ``fused.pooled`` into one of a fixed ``answers`` set (sample field ``answer``).

    ``class_weights`` (one positive number per answer, in ``answers`` order) weigh the
    cross-entropy of each answer, for skewed answer sets such as PubMedQA's yes/no/maybe.
    """

    task_type: ClassVar[str] = "qa"

    def __init__(
        self,
        d_model: int,
        answers: Sequence[str] = ("yes", "no", "maybe"),
        dropout: float = 0.1,
        hidden: int | None = None,
        label_smoothing: float = 0.0,
        class_weights: Sequence[float] | None = None,
    ) -> None:
        super().__init__()
        self.answers = [str(answer) for answer in answers]
        if len(self.answers) < 2 or len(set(self.answers)) != len(self.answers):
            raise ConfigError(f"QuestionAnsweringHead needs 2+ distinct answers, got {answers}")
        if class_weights is not None and (
            len(class_weights) != len(self.answers) or min(class_weights) <= 0
        ):
            raise ConfigError(
                f"class_weights needs one positive weight per answer {self.answers}, "
                f"got {list(class_weights)}"
            )
        self.d_model = d_model
        self.dropout = dropout
        self.hidden = hidden
        self.label_smoothing = label_smoothing
        self.class_weights = None if class_weights is None else [float(w) for w in class_weights]
        weight = None if class_weights is None else torch.tensor(self.class_weights)
        self.register_buffer("answer_weight", weight, persistent=False)  # config holds them
        self.mlp = build_mlp(d_model, len(self.answers), hidden, dropout)

    def forward(self, fused: FusionOutput, answer_index: Tensor | None = None) -> HeadOutput:
        logits = self.mlp(fused.pooled)
        if answer_index is None:
            return HeadOutput(logits=logits)
        weight = None if self.answer_weight is None else self.answer_weight.to(logits.dtype)
        loss = F.cross_entropy(
            logits, answer_index, weight=weight, label_smoothing=self.label_smoothing
        )
        return HeadOutput(logits=logits, loss=loss)

    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        indices = [
            label_index(require_field(s, "answer", i, self.task_type), self.answers, "answer", i)
            for i, s in enumerate(samples)
        ]
        return {"answer_index": torch.tensor(indices, dtype=torch.long)}

    def decode(self, output: HeadOutput) -> list[str]:
        """The answer string per sample."""
        return [self.answers[i] for i in output.logits.argmax(dim=-1).tolist()]

    def config_dict(self) -> dict:
        return {
            "d_model": self.d_model,
            "answers": list(self.answers),
            "dropout": self.dropout,
            "hidden": self.hidden,
            "label_smoothing": self.label_smoothing,
            "class_weights": self.class_weights,
        }


class MultipleChoiceHead(Head):
    """Score each (question, option) row and pick the best option of each question.

    The collator runs :meth:`expand_samples` first, so every sample becomes ``K`` rows (``K`` =
    the most options in the batch; shorter option lists are padded with empty options) and
    ``fused.pooled`` is ``[B * K, d_model]``, sample-major. ``choice_mask [B, K]`` says which
    rows are real options; padded options score ``-inf``.
    """

    task_type: ClassVar[str] = "qa"

    def __init__(
        self,
        d_model: int,
        dropout: float = 0.1,
        hidden: int | None = None,
        label_smoothing: float = 0.0,
    ) -> None:
        super().__init__()
        self.d_model = d_model
        self.dropout = dropout
        self.hidden = hidden
        self.label_smoothing = label_smoothing
        self.scorer = build_mlp(d_model, 1, hidden, dropout)

    @staticmethod
    def expand_samples(samples: Sequence[dict]) -> list[dict]:
        """One sample per (question, option): ``text`` becomes the pair ``(question, option)``.

        Every other field is copied; each sample yields as many rows as the longest ``options``
        list in ``samples`` (padding rows carry an empty option and are masked out later).
        """
        options = [_options(sample, i) for i, sample in enumerate(samples)]
        width = max((len(o) for o in options), default=0)
        rows = []
        for i, (sample, opts) in enumerate(zip(samples, options)):
            question = require_field(sample, "text", i, "multiple-choice")
            padded = list(opts) + [""] * (width - len(opts))
            rows.extend({**sample, "text": (question, option)} for option in padded)
        return rows

    def forward(
        self, fused: FusionOutput, choice_mask: Tensor, answer_index: Tensor | None = None
    ) -> HeadOutput:
        batch, width = choice_mask.shape
        if fused.pooled.shape[0] != batch * width:
            raise DataError(
                f"MultipleChoiceHead got {fused.pooled.shape[0]} fused rows for choice_mask "
                f"{tuple(choice_mask.shape)}; expected batch * options = {batch * width} "
                "(run MultipleChoiceHead.expand_samples before collating)"
            )
        scores = self.scorer(fused.pooled).view(batch, width)
        logits = scores.masked_fill(~choice_mask, float("-inf"))
        if answer_index is None:
            return HeadOutput(logits=logits)
        loss = F.cross_entropy(logits, answer_index, label_smoothing=self.label_smoothing)
        return HeadOutput(logits=logits, loss=loss)

    def collate_inputs(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """``choice_mask [B, K]`` from each sample's ``options``."""
        counts = [len(_options(sample, i)) for i, sample in enumerate(samples)]
        width = max(counts, default=0)
        return {"choice_mask": torch.arange(width)[None, :] < torch.tensor(counts)[:, None]}

    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """``choice_mask`` plus ``answer_index [B]``.

        ``answer`` is the option string, its 0-based index, or (when ``options`` is a dict such as
        MedQA's ``{"A": ..., "B": ...}``) its key.
        """
        indices = []
        for i, sample in enumerate(samples):
            opts = _options(sample, i)
            answer = require_field(sample, "answer", i, self.task_type)
            keys = list(sample["options"]) if isinstance(sample["options"], dict) else []
            if answer in keys:  # MedQA: answer is the option letter
                indices.append(keys.index(answer))
            elif isinstance(answer, int) and not isinstance(answer, bool):
                if not 0 <= answer < len(opts):
                    raise DataError(
                        f"sample {i}: field 'answer' index {answer} is outside its "
                        f"{len(opts)} options"
                    )
                indices.append(answer)
            else:
                indices.append(label_index(answer, opts, "answer", i))
        return {
            **self.collate_inputs(samples),
            "answer_index": torch.tensor(indices, dtype=torch.long),
        }

    def decode(self, output: HeadOutput, options: Sequence[Sequence[str]] | None = None) -> list:
        """The chosen option index per sample, or the option string when ``options`` is given."""
        chosen = output.logits.argmax(dim=-1).tolist()
        if options is None:
            return chosen
        return [opts[i] for opts, i in zip(options, chosen)]

    def config_dict(self) -> dict:
        return {
            "d_model": self.d_model,
            "dropout": self.dropout,
            "hidden": self.hidden,
            "label_smoothing": self.label_smoothing,
        }


def _options(sample: dict, index: int) -> list[str]:
    options = require_field(sample, "options", index, "multiple-choice")
    if isinstance(options, dict):  # MedQA stores {"A": "...", "B": "..."}
        options = list(options.values())
    if not isinstance(options, list) or not options or not all(isinstance(o, str) for o in options):
        raise DataError(
            f"sample {index}: field 'options' must be a non-empty list of strings, got {options!r}"
        )
    return options
