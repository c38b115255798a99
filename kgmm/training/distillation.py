"""Knowledge distillation: a frozen teacher :class:`FusedModel` guides a smaller student.

Hinton et al. (2015): the student's training loss gains
``weight * T^2 * KL(softmax(teacher / T) || softmax(student / T))`` on the logits of the
same batch, plus (optionally) ``hidden_weight * MSE`` between the two models' fused pooled
vectors. Written by hand: no maintained library distils a custom multi-head model through a
training-loop hook (transformers' distillation lives in example scripts, not a library API).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor

from kgmm.errors import ConfigError
from kgmm.heads import HEAD_CLASSES, Head, head_config
from kgmm.model import FusedModel
from kgmm.training.callbacks import TrainerCallback

if TYPE_CHECKING:
    from kgmm.model import ModelOutput
    from kgmm.training.trainer import Trainer

# Head config fields that fix what each logit means; teacher and student must agree on them.
_OUTPUT_FIELDS = {
    "classification": ("labels", "multi_label"),
    "qa": ("answers",),
    "multiple_choice": (),
    "translation": ("vocab_size", "tokenizer", "pad_id", "bos_id", "eos_id"),
    "recommendation": ("num_users", "num_items", "loss"),
}


class Distillation(TrainerCallback):
    """Adds a distillation term from ``teacher`` to every training loss of the student.

    What each head distils (all scaled by ``weight * temperature**2``):

    * classification (single label), ``qa``, ``multiple_choice``: KL between the softened
      class (answer, option) distributions; padded options of multiple choice are ignored;
    * multi-label classification: the binary KL of each label's softened sigmoid;
    * translation: the KL of the next-token distributions at every teacher-forced target
      position that is not padding, averaged over those positions;
    * recommendation: the binary KL of the softened sigmoid of each score (``bce``), or of
      the preference ``positive - negative`` (``bpr``).

    ``hidden_weight > 0`` adds the mean squared error between the student's and the teacher's
    ``output.fused.pooled``; the two fusion widths (``d_model``) must then be equal.

    The teacher runs frozen, in eval mode and without gradients on the student's collated
    batch, so both models must read inputs the same way: the same modalities, the same text
    tokenizer vocabulary and the same knowledge graph (entity and relation ids); image and
    audio inputs are the student's preprocessed tensors. Each task's heads must have the same
    outputs (labels, answers, target vocabulary, users and items). Checked when training
    starts, which also moves the teacher to the trainer's device and freezes it for good
    (``requires_grad=False``). Training records gain the mean term as ``loss/distillation``.
    """

    def __init__(
        self,
        teacher: FusedModel,
        temperature: float = 2.0,
        weight: float = 1.0,
        hidden_weight: float = 0.0,
    ) -> None:
        if temperature <= 0:
            raise ConfigError(f"Distillation temperature must be > 0, got {temperature}")
        if weight < 0 or hidden_weight < 0:
            raise ConfigError(
                f"Distillation weights must be >= 0, got weight={weight}, "
                f"hidden_weight={hidden_weight}"
            )
        self.teacher = teacher
        self.temperature = temperature
        self.weight = weight
        self.hidden_weight = hidden_weight
        self._heads: dict[str, dict[str, Any]] = {}
        self._sum: Tensor | float = 0.0
        self._count = 0

    def on_train_begin(self, trainer: Trainer) -> None:
        self._heads = check_compatible(self.teacher, trainer.model, list(trainer.train_data))
        if self.hidden_weight > 0:
            widths = (self.teacher.fusion.config.d_model, trainer.model.fusion.config.d_model)
            if widths[0] != widths[1]:
                raise ConfigError(
                    f"hidden_weight={self.hidden_weight} matches fused vectors, but the teacher's "
                    f"d_model is {widths[0]} and the student's {widths[1]}; set hidden_weight=0 "
                    "or give both the same fusion d_model"
                )
        self.teacher.to(trainer.device).eval().requires_grad_(False)

    def extra_loss(
        self, trainer: Trainer, task: str, batch: dict[str, Any], output: ModelOutput
    ) -> Tensor:
        with torch.no_grad():
            teacher_output = self.teacher(task=task, **batch)
        loss = self.weight * distillation_loss(
            self._heads[task], output.logits, teacher_output.logits, self.temperature, batch
        )
        if self.hidden_weight > 0:
            student_pooled = output.fused.pooled.float()
            loss = loss + self.hidden_weight * F.mse_loss(
                student_pooled, teacher_output.fused.pooled.float()
            )
        self._sum = self._sum + loss.detach()
        self._count += 1
        return loss

    def on_log(self, trainer: Trainer, record: dict[str, Any]) -> None:
        if self._count:
            record["loss/distillation"] = float(self._sum) / self._count
        self._sum, self._count = 0.0, 0


def distillation_loss(
    head: dict[str, Any],
    student: Tensor,
    teacher: Tensor,
    temperature: float,
    batch: dict[str, Any],
) -> Tensor:
    """``T^2 *`` the divergence of ``student`` logits from ``teacher`` logits for a head of
    config ``head`` (see :class:`Distillation` for what each head gets)."""
    kind = head["type"]
    student, teacher = student.float() / temperature, teacher.float() / temperature
    if kind in ("classification", "qa", "multiple_choice") and not head.get("multi_label"):
        divergence = _softmax_kl(student, teacher).mean()
    elif kind == "classification":
        divergence = _binary_kl(student, teacher).sum(dim=-1).mean()
    elif kind == "translation":
        positions = batch["target_ids"][:, 1:] != head["pad_id"]
        divergence = _softmax_kl(student, teacher)[positions].mean()
    elif kind == "recommendation":
        if student.dim() == 2:  # BPR: (positive, negative) scores -> preference
            student, teacher = student[:, 0] - student[:, 1], teacher[:, 0] - teacher[:, 1]
        divergence = _binary_kl(student, teacher).mean()
    else:
        raise ConfigError(f"Distillation does not support heads of type {kind!r}")
    return temperature**2 * divergence


def _softmax_kl(student: Tensor, teacher: Tensor) -> Tensor:
    """KL(teacher || student) over the last dimension; classes the teacher scores ``-inf``
    (padded options) contribute nothing."""
    teacher_log = teacher.log_softmax(dim=-1)
    student_log = student.log_softmax(dim=-1)
    terms = teacher_log.exp() * (teacher_log - student_log)
    return torch.where(torch.isfinite(teacher), terms, 0.0).sum(dim=-1)


def _binary_kl(student: Tensor, teacher: Tensor) -> Tensor:
    """Elementwise KL between Bernoulli(sigmoid(teacher)) and Bernoulli(sigmoid(student))."""
    p = torch.sigmoid(teacher)
    return p * (F.logsigmoid(teacher) - F.logsigmoid(student)) + (1 - p) * (
        F.logsigmoid(-teacher) - F.logsigmoid(-student)
    )


def check_compatible(
    teacher: FusedModel, student: FusedModel, tasks: list[str]
) -> dict[str, dict[str, Any]]:
    """The student's head configs of ``tasks``; a :class:`ConfigError` unless ``teacher`` can
    read ``student``'s batches of ``tasks`` and score them on the same outputs."""
    modalities = (sorted(teacher.encoders), sorted(student.encoders))
    if modalities[0] != modalities[1]:
        raise ConfigError(
            f"teacher encodes {modalities[0]} but the student {modalities[1]}; distillation "
            "needs the same modalities"
        )
    if "text" in student.encoders:
        vocabularies = [m.encoders["text"].tokenizer.get_vocab() for m in (teacher, student)]
        if vocabularies[0] != vocabularies[1]:
            raise ConfigError(
                "teacher and student text tokenizers differ (vocabularies of "
                f"{len(vocabularies[0])} and {len(vocabularies[1])} tokens); the teacher reads "
                "the student's token ids, so both need the same tokenizer"
            )
    _check_same_graph(teacher, student)
    heads = {}
    for task in tasks:
        if task not in teacher.heads:
            raise ConfigError(
                f"the teacher has no head for task {task!r} ({sorted(teacher.heads)})"
            )
        teacher_head, student_head = _config(teacher.heads[task]), _config(student.heads[task])
        kind = student_head["type"]
        if teacher_head["type"] != kind:
            raise ConfigError(
                f"task {task!r}: the teacher's head is {teacher_head['type']!r}, the student's "
                f"{kind!r}"
            )
        heads[task] = student_head
        for field in _OUTPUT_FIELDS[kind]:
            if teacher_head.get(field) != student_head.get(field):
                raise ConfigError(
                    f"task {task!r}: teacher and student heads differ in {field!r} "
                    f"({teacher_head.get(field)!r:.200} vs {student_head.get(field)!r:.200}); "
                    "their logits must mean the same things"
                )
    return heads


def _config(head: Head) -> dict[str, Any]:
    if type(head) not in HEAD_CLASSES.values():
        raise ConfigError(f"Distillation does not support heads of type {type(head).__name__}")
    return head_config(head)


def _check_same_graph(teacher: FusedModel, student: FusedModel) -> None:
    def uses_graph(model: FusedModel) -> bool:
        return model.kg is not None and model.entity_table is not None

    if uses_graph(teacher) and not uses_graph(student):
        raise ConfigError(
            "the teacher uses a knowledge graph but the student has none, so the student's "
            "batches carry no entity ids for the teacher; give the student the teacher's graph"
        )
    if uses_graph(teacher):
        graphs = (teacher.kg, student.kg)
        keys = [[entity.key for entity in kg.entities()] for kg in graphs]
        if keys[0] != keys[1] or graphs[0].relations != graphs[1].relations:
            raise ConfigError(
                f"teacher and student knowledge graphs differ ({graphs[0].num_entities} vs "
                f"{graphs[1].num_entities} entities, {graphs[0].num_relations} vs "
                f"{graphs[1].num_relations} relations); entity ids in a batch must mean the "
                "same entity to both"
            )
