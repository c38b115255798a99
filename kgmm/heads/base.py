"""The interface every task head implements, and the sample-field checks they share."""

from __future__ import annotations

import difflib
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from numbers import Integral
from typing import TYPE_CHECKING, Any, ClassVar

from torch import Tensor, nn

from kgmm.errors import DataError

if TYPE_CHECKING:
    from kgmm.fusion.output import FusionOutput


@dataclass
class HeadOutput:
    """What a head returns.

    ``logits`` are the task scores; ``loss`` is set when targets were given; ``predictions``
    holds a decoded tensor where scores alone do not say the answer (generated token ids).
    """

    logits: Tensor
    loss: Tensor | None = None
    predictions: Tensor | None = None


class Head(nn.Module, ABC):
    """A task head: fused representation in, task scores (and a loss) out.

    ``collate_targets`` runs on the CPU (data-loader workers) and turns raw sample fields into
    the tensors ``forward`` takes as keyword arguments; ``collate_inputs`` returns the subset
    that prediction needs (no labels). ``config_dict`` is JSON and ``from_config_dict`` rebuilds
    the head from it, so checkpoints never need pickle. ``input_fields`` are the sample
    fields the head itself predicts from (recommendation: user and item ids), besides the
    modalities and entities every head sees.
    """

    task_type: ClassVar[str]
    input_fields: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def forward(self, fused: FusionOutput, **targets: Tensor) -> HeadOutput:
        """Score ``fused``; compute the loss when the training targets are given."""

    @abstractmethod
    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """Raw samples -> every tensor ``forward`` takes for training (inputs and labels)."""

    def collate_inputs(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """Raw samples -> the tensors ``forward`` needs at prediction time (no labels)."""
        return {}

    @abstractmethod
    def decode(self, output: HeadOutput, **kwargs: Any) -> list:
        """Tensors -> Python results (labels, answers, sentences, scores)."""

    @abstractmethod
    def config_dict(self) -> dict:
        """JSON-serialisable constructor arguments; ``from_config_dict`` inverts it."""

    @classmethod
    def from_config_dict(cls, config: dict) -> Head:
        """Rebuild a head (with fresh weights) from :meth:`config_dict`."""
        return cls(**config)


def require_field(sample: dict, field: str, index: int, task: str) -> Any:
    """``sample[field]``, or a :class:`DataError` naming the field and the sample index."""
    if not isinstance(sample, dict):
        raise DataError(f"sample {index}: expected a dict of fields, got {type(sample).__name__}")
    value = sample.get(field)
    if value is None:
        present = ", ".join(sorted(sample)) or "none"
        raise DataError(
            f"sample {index}: the {task} head needs field {field!r}, which is missing "
            f"(fields present: {present})"
        )
    return value


def require_index(value: Any, field: str, index: int, size: int) -> int:
    """``value`` as an int in ``[0, size)``, or a :class:`DataError` naming field and sample."""
    if not is_id(value, size):
        raise DataError(
            f"sample {index}: field {field!r} must be an integer id in [0, {size}), got {value!r}"
        )
    return int(value)


def is_id(value: Any, size: int) -> bool:
    """Whether ``value`` is an integer (Python or NumPy, not bool) in ``[0, size)``."""
    return isinstance(value, Integral) and not isinstance(value, bool) and 0 <= value < size


def label_index(value: Any, labels: Sequence[str], field: str, index: int) -> int:
    """Position of ``value`` in ``labels``; an unknown value raises a :class:`DataError`."""
    name = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
    if isinstance(name, str):
        try:
            return labels.index(name)
        except ValueError:
            pass
    close = difflib.get_close_matches(str(name), labels, n=3, cutoff=0.5)
    hint = f"; closest: {', '.join(map(repr, close))}" if close else ""
    shown = ", ".join(map(repr, labels[:20])) + (" ..." if len(labels) > 20 else "")
    raise DataError(
        f"sample {index}: field {field!r} has unknown value {value!r}{hint} (known: {shown})"
    )
