"""Evaluation of one task: its mean loss plus the metrics of its head type.

* classification, qa, multiple choice: ``accuracy`` and ``macro_f1`` of the arg-max
  prediction (what the head's ``decode`` returns); multi-label: subset ``accuracy``,
  ``micro_f1`` and ``macro_f1`` at probability 0.5;
* translation: sacreBLEU (``bleu``) of beam-search outputs decoded by the head;
* recommendation: ``auc`` and ``f1`` at probability 0.5 (BCE), or ``auc`` and pairwise
  ``accuracy`` of positive over negative item (BPR).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from kgmm.data import longest_first
from kgmm.data.batch import move_to
from kgmm.device import autocast
from kgmm.errors import ConfigError, DataError
from kgmm.heads import HeadOutput
from kgmm.metrics import accuracy, auc, bleu, f1_at_threshold, macro_f1, multilabel_f1
from kgmm.model import FusedModel, ModelOutput, resolve_model_bf16


def evaluate_task(
    model: FusedModel,
    task: str,
    samples: Sequence[dict],
    batch_size: int = 32,
    device: torch.device | None = None,
    bf16: bool | str = "auto",
) -> dict[str, float]:
    """``{"task/loss": ..., "task/<metric>": ...}`` over ``samples`` (model in eval mode),
    under bf16 autocast when ``bf16`` (``"auto"``: where the device has bf16 hardware; an
    int8 model from :func:`kgmm.model.int8_dynamic` runs in fp32).
    Batches are cut from the samples sorted by text length, longest first. The metrics are
    sums or set statistics over samples, so the order does not change them; the loss is
    each batch's mean weighted by its sample count, and a head whose loss is a mean over
    tokens (translation) gives a loss that depends on which samples share a batch."""
    if task not in model.heads:
        raise ConfigError(f"unknown task {task!r}; this model has heads {sorted(model.heads)}")
    if len(samples) == 0:
        raise DataError(f"no samples to evaluate task {task!r} on")
    device = device or next(model.parameters()).device
    bf16 = resolve_model_bf16(model, bf16, device)
    head = model.heads[task]
    scorer = _SCORERS[head.task_type](head)
    collate = model.collator(task)
    was_training = model.training
    model.eval()
    loss_sum = 0.0
    order = longest_first(samples)  # batches of like length pad less
    try:
        with torch.no_grad(), autocast(device, bf16):
            for start in range(0, len(order), batch_size):
                chunk = [samples[index] for index in order[start : start + batch_size]]
                batch = move_to(collate(chunk), device)
                output = model(task=task, **batch)
                loss_sum += float(output.loss) * len(chunk)
                scorer.update(chunk, batch, output, lambda b: model(task=task, **b))
    finally:
        model.train(was_training)
    metrics = {"loss": loss_sum / len(samples), **scorer.result()}
    return {f"{task}/{name}": value for name, value in metrics.items()}


class _ChoiceScorer:
    """Classification and question answering: one class index per sample."""

    def __init__(self, head: Any) -> None:
        self.multi_label = getattr(head, "multi_label", False)
        self.target = "labels" if head.task_type == "classification" else "answer_index"
        self.predicted: list[torch.Tensor] = []
        self.gold: list[torch.Tensor] = []

    def update(self, samples, batch, output: ModelOutput, forward) -> None:
        logits = output.logits.float().cpu()
        self.predicted.append(logits.sigmoid() > 0.5 if self.multi_label else logits.argmax(-1))
        self.gold.append(batch[self.target].cpu())

    def result(self) -> dict[str, float]:
        predicted = torch.cat(self.predicted).int().numpy()
        gold = torch.cat(self.gold).int().numpy()
        if self.multi_label:
            return {"accuracy": accuracy(gold, predicted), **multilabel_f1(gold, predicted)}
        return {"accuracy": accuracy(gold, predicted), "macro_f1": macro_f1(gold, predicted)}


class _TranslationScorer:
    """Beam search on the inputs alone, detokenised by the head, scored with sacreBLEU."""

    def __init__(self, head: Any) -> None:
        self.head = head
        self.hypotheses: list[str] = []
        self.references: list[str] = []

    def update(self, samples, batch, output: ModelOutput, forward) -> None:
        inputs = {key: value for key, value in batch.items() if key != "target_ids"}
        generated = forward(inputs)
        decoded = self.head.decode(
            HeadOutput(logits=generated.logits, predictions=generated.predictions)
        )
        self.hypotheses.extend(_as_text(item) for item in decoded)
        self.references.extend(_as_text(sample["target"]) for sample in samples)

    def result(self) -> dict[str, float]:
        return {"bleu": bleu(self.hypotheses, self.references).score}


class _RecommendationScorer:
    """Click labels against scores (BCE), or positive against negative items (BPR)."""

    def __init__(self, head: Any) -> None:
        self.pairwise = head.loss_type == "bpr"
        self.scores: list[torch.Tensor] = []
        self.labels: list[torch.Tensor] = []

    def update(self, samples, batch, output: ModelOutput, forward) -> None:
        logits = output.logits.float().cpu()
        if self.pairwise:  # columns: positive item, negative item
            self.scores.append(logits)
        else:
            self.scores.append(logits.sigmoid())
            self.labels.append(batch["labels"].cpu())

    def result(self) -> dict[str, float]:
        scores = torch.cat(self.scores)
        if self.pairwise:
            positive, negative = scores[:, 0], scores[:, 1]
            labels = [1] * len(positive) + [0] * len(negative)
            return {
                "accuracy": float((positive > negative).float().mean()),
                "auc": auc(labels, torch.cat([positive, negative]).tolist()),
            }
        labels = torch.cat(self.labels).int().tolist()
        metrics = {"f1": f1_at_threshold(labels, scores.tolist())}
        if len(set(labels)) == 2:
            metrics["auc"] = auc(labels, scores.tolist())
        return metrics


def _as_text(value: Any) -> str:
    """A sentence, or a list of token ids as space-separated ids (heads without tokenizer)."""
    return value if isinstance(value, str) else " ".join(str(token) for token in value)


_SCORERS = {
    "classification": _ChoiceScorer,
    "qa": _ChoiceScorer,
    "translation": _TranslationScorer,
    "recommendation": _RecommendationScorer,
}
