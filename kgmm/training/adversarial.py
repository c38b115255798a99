"""Adversarial training in embedding space (FGM, PGD) and an embedding-space attack.

Training (:class:`AdversarialTraining`) follows the recipe used to fine-tune BERT-like
encoders: after each micro-batch's backward, the text encoder's word-embedding matrix
(and optionally the entity-embedding table) is moved along its gradient,

* FGM (Miyato et al. 2017): ``r = epsilon * g / ||g||``, one extra forward and backward;
* PGD (Madry et al. 2018): ``steps`` ascent steps of size ``alpha * g / ||g||``, each
  projected back into the ball ``||r|| <= epsilon``; ``steps - 1`` forwards find the
  direction (their gradients go to the perturbation only), the last one is back-propagated;

the loss at the perturbed point is added to the gradients, and the original weights are
copied back bit for bit before the optimizer steps. Norms are taken over the whole matrix,
as in those implementations. No library implements this for an arbitrary model (torchattacks
and friends attack images), hence the code here.

Evaluation (:func:`embedding_attack_accuracy`) attacks each test example on its own: the
perturbation is added to the example's word-embedding vectors (Miyato's formulation) with
an L2 norm of ``epsilon`` per example, so the result does not depend on the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from kgmm.data import longest_first
from kgmm.data.batch import move_to
from kgmm.errors import ConfigError
from kgmm.metrics import accuracy
from kgmm.model import FusedModel
from kgmm.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from kgmm.training.trainer import Trainer

METHODS = ("fgm", "pgd")
TARGETS = ("text", "entities")


class AdversarialTraining(TrainerCallback):
    """Adds the loss at an FGM or PGD perturbation of the input embeddings to every
    micro-batch's gradients (see the module doc). Works for every head: it needs only
    :meth:`Trainer.compute_loss`. ``targets`` picks what is perturbed: ``"text"`` (the word
    embeddings, which must be trainable) and/or ``"entities"`` (``model.entity_table``)."""

    def __init__(
        self,
        method: str = "fgm",
        epsilon: float = 1.0,
        alpha: float = 0.3,
        steps: int = 3,
        targets: Sequence[str] = ("text",),
    ) -> None:
        if method not in METHODS:
            raise ConfigError(f"adversarial method must be one of {METHODS}, got {method!r}")
        if epsilon <= 0 or alpha <= 0:
            raise ConfigError(f"epsilon and alpha must be > 0, got {epsilon} and {alpha}")
        if method == "pgd" and steps < 1:
            raise ConfigError(f"PGD needs steps >= 1, got {steps}")
        unknown = sorted(set(targets) - set(TARGETS))
        if not targets or unknown:
            raise ConfigError(f"adversarial targets must be among {TARGETS}, got {targets!r}")
        self.method = method
        self.epsilon = epsilon
        self.alpha = alpha
        self.steps = steps if method == "pgd" else 1
        self.targets = tuple(dict.fromkeys(targets))
        self._tensors: dict[str, torch.Tensor] = {}
        self._earlier: dict[str, torch.Tensor] = {}

    def on_train_begin(self, trainer: Trainer) -> None:
        if trainer.distributed.enabled:
            raise ConfigError(
                "AdversarialTraining runs a second backward per micro-batch, which DDP does "
                "not allow; train in one process"
            )
        self._tensors = {target: _target_tensor(trainer.model, target) for target in self.targets}

    def on_step_begin(self, trainer: Trainer, step: int) -> None:
        self._earlier = {}
        for tensor in self._buffers():
            tensor.requires_grad_(True)  # a frozen table needs a gradient for one step only

    def on_step_end(self, trainer: Trainer, step: int, logs: dict[str, Any]) -> None:
        for tensor in self._buffers():
            tensor.requires_grad_(False)
            tensor.grad = None

    def on_backward(
        self, trainer: Trainer, task: str, batch: dict[str, Any], loss: torch.Tensor
    ) -> None:
        gradients = self._micro_batch_gradients()
        if not gradients:
            return
        tensors = {name: self._tensors[name] for name in gradients}
        originals = {name: tensor.detach().clone() for name, tensor in tensors.items()}
        first_step = self.epsilon if self.method == "fgm" else self.alpha
        deltas = {name: _scaled(g, first_step) for name, g in gradients.items()}
        try:
            for _ in range(self.steps - 1):
                deltas = {name: _projected(d, self.epsilon) for name, d in deltas.items()}
                _place(tensors, originals, deltas)
                adversarial = trainer.compute_loss(task, batch)
                ascent = torch.autograd.grad(adversarial, list(tensors.values()))
                deltas = {
                    name: deltas[name] + _scaled(g, self.alpha) for name, g in zip(tensors, ascent)
                }
            deltas = {name: _projected(d, self.epsilon) for name, d in deltas.items()}
            _place(tensors, originals, deltas)
            args = trainer.args
            weight = args.task_weights.get(task, 1.0) / args.gradient_accumulation_steps
            (trainer.compute_loss(task, batch) * weight).backward()
        finally:
            with torch.no_grad():
                for name, tensor in tensors.items():
                    tensor.copy_(originals[name])
        self._remember_gradients(trainer)

    def _micro_batch_gradients(self) -> dict[str, torch.Tensor]:
        """Each target's gradient from this micro-batch alone (earlier ones subtracted)."""
        gradients = {}
        for name, tensor in self._tensors.items():
            if tensor.grad is None:
                continue  # the batch did not use it (no text, no linked entity)
            gradient = tensor.grad.detach()
            if name in self._earlier:
                gradient = gradient - self._earlier[name]
            if torch.isfinite(gradient).all() and bool(gradient.any()):
                gradients[name] = gradient
        return gradients

    def _remember_gradients(self, trainer: Trainer) -> None:
        for name, tensor in self._tensors.items():
            if isinstance(tensor, nn.Parameter):
                if trainer.args.gradient_accumulation_steps > 1 and tensor.grad is not None:
                    self._earlier[name] = tensor.grad.detach().clone()
            else:
                tensor.grad = None  # a buffer's gradient is ours alone: start afresh

    def _buffers(self) -> list[torch.Tensor]:
        return [t for t in self._tensors.values() if not isinstance(t, nn.Parameter)]


def word_embeddings(model: FusedModel) -> nn.Module:
    """The text encoder's input (word) embedding module."""
    if "text" not in model.encoders:
        raise ConfigError("adversarial target 'text' needs a text encoder; the model has none")
    return model.encoders["text"].model.get_input_embeddings()


def _target_tensor(model: FusedModel, target: str) -> torch.Tensor:
    if target == "text":
        weight = word_embeddings(model).weight
        if not weight.requires_grad:
            raise ConfigError(
                "adversarial target 'text' moves the word embeddings along their gradient, but "
                "they are frozen (freeze, trainable_top_layers or an adapter); unfreeze them "
                "or use targets=('entities',)"
            )
        return weight
    if model.entity_table is None:
        raise ConfigError(
            "adversarial target 'entities' needs a knowledge graph; the model has none"
        )
    return model.entity_table


def _scaled(gradient: torch.Tensor, size: float) -> torch.Tensor:
    """``size * g / ||g||`` (zero when the gradient is zero)."""
    norm = torch.linalg.vector_norm(gradient.float())
    return gradient * (size / norm) if norm > 0 else torch.zeros_like(gradient)


def _projected(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    """``delta`` scaled back onto the ball of radius ``epsilon`` when it lies outside."""
    norm = torch.linalg.vector_norm(delta.float())
    return delta * (epsilon / norm) if norm > epsilon else delta


def _place(
    tensors: dict[str, torch.Tensor],
    originals: dict[str, torch.Tensor],
    deltas: dict[str, torch.Tensor],
) -> None:
    with torch.no_grad():
        for name, tensor in tensors.items():
            tensor.copy_(originals[name] + deltas[name])


# ---------------------------------------------------------------------- evaluation attack
class _EmbeddingPerturbation:
    """A forward hook adding ``delta`` to the word-embedding output; with ``start`` set, the
    next call creates a zero ``delta`` that requires a gradient."""

    def __init__(self) -> None:
        self.delta: torch.Tensor | None = None
        self.start = False

    def __call__(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if self.start:
            self.delta = torch.zeros_like(output, requires_grad=True)
            self.start = False
        return output if self.delta is None else output + self.delta


def embedding_attack_accuracy(
    model: FusedModel,
    samples: Sequence[dict],
    task: str,
    epsilon: float,
    steps: int = 1,
    alpha: float | None = None,
    batch_size: int = 32,
) -> dict[str, float]:
    """``{"accuracy", "attacked_accuracy"}`` of a classification or QA head on ``samples``,
    clean and under an L2 attack of norm ``epsilon`` per example on the word embeddings:
    FGSM-style one step when ``steps == 1``, else PGD with step ``alpha`` (default
    ``2.5 * epsilon / steps``). Runs in eval mode, in float32, on the model's device, on
    batches cut longest text first; each example's attack is its own, so the batch size
    does not change the result."""
    if task not in model.heads:
        raise ConfigError(f"unknown task {task!r}; this model has heads {sorted(model.heads)}")
    head = model.heads[task]
    if head.task_type not in ("classification", "qa") or getattr(head, "multi_label", False):
        raise ConfigError(
            f"embedding_attack_accuracy scores single-label classification and QA heads; "
            f"task {task!r} is {head.task_type}"
        )
    if epsilon < 0 or steps < 1:
        raise ConfigError(f"need epsilon >= 0 and steps >= 1, got {epsilon} and {steps}")
    alpha = alpha if alpha is not None else 2.5 * epsilon / steps
    target = "labels" if head.task_type == "classification" else "answer_index"
    device = next(model.parameters()).device
    collate = model.collator(task)
    perturbation = _EmbeddingPerturbation()
    handle = word_embeddings(model).register_forward_hook(perturbation)
    was_training = model.training
    model.eval()
    gold, clean, attacked = [], [], []
    try:
        order = longest_first(samples)  # batches of like length pad less
        for start in range(0, len(order), batch_size):
            chunk = [samples[index] for index in order[start : start + batch_size]]
            batch = move_to(collate(chunk), device)
            gold.append(batch[target].cpu())
            perturbation.delta, perturbation.start = None, True
            with torch.enable_grad():
                output = model(task=task, **batch)
                gradient = torch.autograd.grad(output.loss, perturbation.delta)[0]
                clean.append(output.logits.argmax(-1).cpu())
                delta = _per_example(gradient, epsilon if steps == 1 else alpha)
                for _ in range(steps - 1):
                    delta = _per_example_projected(delta, epsilon).requires_grad_(True)
                    perturbation.delta = delta
                    loss = model(task=task, **batch).loss
                    gradient = torch.autograd.grad(loss, delta)[0]
                    delta = delta.detach() + _per_example(gradient, alpha)
            perturbation.delta = _per_example_projected(delta, epsilon)
            with torch.no_grad():
                attacked.append(model(task=task, **batch).logits.argmax(-1).cpu())
    finally:
        handle.remove()
        model.train(was_training)
    gold_labels = torch.cat(gold).tolist()
    return {
        "accuracy": accuracy(gold_labels, torch.cat(clean).tolist()),
        "attacked_accuracy": accuracy(gold_labels, torch.cat(attacked).tolist()),
    }


def _per_example(gradient: torch.Tensor, size: float) -> torch.Tensor:
    """``size * g_i / ||g_i||`` for each row ``i`` (one example's embedded tokens)."""
    norms = torch.linalg.vector_norm(gradient.flatten(1), dim=1).clamp_min(1e-12)
    return gradient * (size / norms).view(-1, *[1] * (gradient.dim() - 1))


def _per_example_projected(delta: torch.Tensor, epsilon: float) -> torch.Tensor:
    norms = torch.linalg.vector_norm(delta.flatten(1), dim=1).clamp_min(1e-12)
    scale = (epsilon / norms).clamp(max=1.0)
    return (delta * scale.view(-1, *[1] * (delta.dim() - 1))).detach()
