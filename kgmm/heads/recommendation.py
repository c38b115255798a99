"""Recommendation: user and item vectors, with a KG part attended per user (KGCN-style)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from kgmm.errors import ConfigError, DataError
from kgmm.heads.base import Head, HeadOutput, is_id, require_field, require_index

if TYPE_CHECKING:
    from kgmm.fusion.output import FusionOutput

ITEM_CONTENT_FIELDS = ("text", "image", "audio", "entities")


class RecommendationHead(Head):
    """Score (user, item) pairs as ``user . item + biases``.

    * **user** = id embedding + a projection of the mean id embedding of the items in the
      user's training history (:meth:`set_history`; the scored item itself is left out).
    * **item** = id embedding + KG part + content part. The KG part attends over the sample's
      ``fused.entity_states`` (the item's entity and its neighbours, from the collator) with
      weights ``softmax(user . W_k state)``, so each user weighs the item's neighbourhood by
      their own affinity to it (KGCN); the content part projects ``fused.pooled`` (zero when
      the sample has no item text or media).

    Losses: ``"bce"`` on ``(user, item, label)`` rows (negatives come from the data) or
    ``"bpr"`` on ``(user, item, neg_item)`` triples. For BPR, ``fused`` has ``2 * B`` rows:
    the positives' then the negatives' (see :meth:`expand_samples`). ``l2`` adds
    ``l2 * (|user|^2 + |item|^2 [+ |neg_item|^2])`` of the batch's id embeddings, averaged
    over the batch (the usual regulariser of BPR matrix factorisation).

    ``item_entity_ids[i]`` (a KG entity id, or -1) gives each sample without an ``entities``
    field its item's entity, so the collator links the item and expands its neighbourhood.
    ``item_fields`` are the sample fields that describe the item; BPR's negative copy drops
    them (a field not listed, e.g. a query text, is shared by both items).

    Full ranking (:meth:`score_all`, :meth:`recommend`) needs every item's KG part without a
    sample at hand. :meth:`cache_items` stores, per item, the fused entity states and pooled
    vector of an item-only sample (what ``forward`` would see for that item); the per-user
    attention is still computed at ranking time. Items never cached get no KG/content part.
    The cache is not saved and goes stale when the model trains: rebuild it before ranking.
    """

    task_type: ClassVar[str] = "recommendation"
    input_fields: ClassVar[tuple[str, ...]] = ("user", "item")

    def __init__(
        self,
        d_model: int,
        num_users: int,
        num_items: int,
        item_entity_ids: Sequence[int] | None = None,
        loss: str = "bce",
        history_size: int = 50,
        max_item_entities: int = 16,
        l2: float = 0.0,
        item_fields: Sequence[str] = ITEM_CONTENT_FIELDS,
    ) -> None:
        super().__init__()
        if loss not in ("bce", "bpr"):
            raise ConfigError(f"RecommendationHead loss must be 'bce' or 'bpr', got {loss!r}")
        if item_entity_ids is not None and len(item_entity_ids) != num_items:
            raise ConfigError(
                f"item_entity_ids has {len(item_entity_ids)} entries for {num_items} items "
                "(use -1 for an item that is not a KG entity)"
            )
        self.d_model = d_model
        self.num_users = num_users
        self.num_items = num_items
        if l2 < 0:
            raise ConfigError(f"RecommendationHead l2 must be >= 0, got {l2}")
        self.item_entity_ids = (
            None if item_entity_ids is None else [int(i) for i in item_entity_ids]
        )
        self.l2 = l2
        self.item_fields = tuple(item_fields)
        self.loss_type = loss
        self.history_size = history_size
        self.max_item_entities = max_item_entities

        self.user_embedding = nn.Embedding(num_users, d_model)
        self.item_embedding = nn.Embedding(num_items, d_model)
        for embedding in (self.user_embedding, self.item_embedding):
            nn.init.normal_(embedding.weight, std=0.1)
        self.user_bias = nn.Embedding(num_users, 1)
        self.item_bias = nn.Embedding(num_items, 1)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)
        self.global_bias = nn.Parameter(torch.zeros(()))
        self.history_proj = nn.Linear(d_model, d_model)
        self.entity_key = nn.Linear(d_model, d_model, bias=False)
        self.entity_value = nn.Linear(d_model, d_model, bias=False)
        self.content_proj = nn.Linear(d_model, d_model, bias=False)

        shape = (num_users, history_size)
        self.register_buffer("history_items", torch.zeros(shape, dtype=torch.long))
        self.register_buffer("history_mask", torch.zeros(shape, dtype=torch.bool))
        self.register_buffer("seen_offsets", torch.zeros(num_users + 1, dtype=torch.long))
        self.register_buffer("seen_items", torch.zeros(0, dtype=torch.long))
        self.register_buffer("cached_entity_states", None, persistent=False)
        self.register_buffer("cached_entity_mask", None, persistent=False)
        self.register_buffer("cached_content", None, persistent=False)

    def set_history(self, user_items: dict[int, Sequence[int]]) -> None:
        """Store each user's training items (oldest first).

        The last ``history_size`` feed the user vector; all of them are what :meth:`score_all`
        excludes by default. Both are saved with the model's weights.
        """
        history = torch.zeros(self.num_users, self.history_size, dtype=torch.long)
        mask = torch.zeros(self.num_users, self.history_size, dtype=torch.bool)
        seen: list[list[int]] = [[] for _ in range(self.num_users)]
        for user, items in user_items.items():
            if not is_id(user, self.num_users):
                raise DataError(f"set_history: user {user!r} is not an id in [0, {self.num_users})")
            bad_items = [i for i in items if not is_id(i, self.num_items)]
            if bad_items:
                raise DataError(
                    f"set_history: the history of user {user} holds {bad_items[:5]!r}, not item "
                    f"ids in [0, {self.num_items})"
                )
            ids = [int(i) for i in items]
            recent = ids[-self.history_size :]
            history[user, : len(recent)] = torch.tensor(recent, dtype=torch.long)
            mask[user, : len(recent)] = True
            seen[int(user)] = sorted(set(ids))
        device = self.history_items.device
        self.history_items = history.to(device)
        self.history_mask = mask.to(device)
        counts = torch.tensor([0] + [len(items) for items in seen])
        self.seen_offsets = counts.cumsum(0).to(device)
        self.seen_items = torch.tensor(
            [item for items in seen for item in items], dtype=torch.long, device=device
        )

    def user_vectors(self, user_ids: Tensor, leave_out: Tensor | None = None) -> Tensor:
        """``[B, d]`` user vectors; ``leave_out [B]`` drops that item from each history."""
        items = self.history_items[user_ids]
        mask = self.history_mask[user_ids]
        if leave_out is not None:
            mask = mask & (items != leave_out[:, None])
        weights = mask.to(self.item_embedding.weight.dtype)
        summed = (self.item_embedding(items) * weights[..., None]).sum(dim=1)
        mean = summed / weights.sum(dim=1, keepdim=True).clamp(min=1.0)
        return self.user_embedding(user_ids) + self.history_proj(mean)

    def _knowledge(self, users: Tensor, states: Tensor, mask: Tensor) -> Tensor:
        """Per-user attention pooling of entity states: ``[B, d]`` from ``[B, E, d]``."""
        if states.shape[1] == 0:
            return users.new_zeros(users.shape)
        logits = torch.einsum("bd,bed->be", users, self.entity_key(states)) / math.sqrt(
            self.d_model
        )
        logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
        weights = logits.softmax(dim=-1) * mask.any(dim=-1, keepdim=True)
        return torch.einsum("be,bed->bd", weights, self.entity_value(states))

    def _score(
        self, users: Tensor, user_ids: Tensor, item_ids: Tensor, fused: FusionOutput, rows: slice
    ) -> Tensor:
        items = (
            self.item_embedding(item_ids)
            + self._knowledge(users, fused.entity_states[rows], fused.entity_mask[rows].bool())
            + self.content_proj(fused.pooled[rows])
        )
        biases = self.user_bias(user_ids)[:, 0] + self.item_bias(item_ids)[:, 0]
        return (users * items).sum(dim=-1) + biases + self.global_bias

    def forward(
        self,
        fused: FusionOutput,
        user_ids: Tensor,
        item_ids: Tensor,
        labels: Tensor | None = None,
        neg_item_ids: Tensor | None = None,
    ) -> HeadOutput:
        """Scores ``[B]`` (+ BCE loss given ``labels``), or ``[B, 2]`` given ``neg_item_ids``."""
        batch = user_ids.shape[0]
        users = self.user_vectors(user_ids, leave_out=item_ids)
        positive = self._score(users, user_ids, item_ids, fused, slice(0, batch))
        if neg_item_ids is None:
            loss = None
            if labels is not None:
                loss = F.binary_cross_entropy_with_logits(positive, labels.to(positive.dtype))
                loss = loss + self._l2_penalty(user_ids, item_ids)
            return HeadOutput(logits=positive, loss=loss)
        if fused.pooled.shape[0] != 2 * batch:
            raise DataError(
                f"BPR needs fused rows for positives then negatives ({2 * batch}), got "
                f"{fused.pooled.shape[0]} (run RecommendationHead.expand_samples before collating)"
            )
        negative = self._score(users, user_ids, neg_item_ids, fused, slice(batch, 2 * batch))
        loss = -F.logsigmoid(positive - negative).mean()
        loss = loss + self._l2_penalty(user_ids, item_ids, neg_item_ids)
        return HeadOutput(logits=torch.stack([positive, negative], dim=1), loss=loss)

    def _l2_penalty(self, user_ids: Tensor, *item_ids: Tensor) -> Tensor | float:
        if not self.l2:
            return 0.0
        squares = self.user_embedding(user_ids).pow(2).sum(dim=-1)
        for ids in item_ids:
            squares = squares + self.item_embedding(ids).pow(2).sum(dim=-1)
        return self.l2 * squares.mean()

    def expand_samples(self, samples: Sequence[dict]) -> list[dict]:
        """The encoder rows of ``samples``: BPR training samples (with ``neg_item``) add one
        copy each that scores ``neg_item`` in place of ``item``, without the positive item's
        ``item_fields``; samples to score (no ``neg_item``) are not copied.

        With ``item_entity_ids``, rows without ``entities`` get their item's entity.
        """
        rows = list(samples)
        if self.loss_type == "bpr" and any("neg_item" in sample for sample in samples):
            for i, sample in enumerate(samples):
                negative = {k: v for k, v in sample.items() if k not in self.item_fields}
                negative["item"] = require_field(sample, "neg_item", i, self.task_type)
                rows.append(negative)
        if self.item_entity_ids is None:
            return rows
        return [self._with_item_entity(row) for row in rows]

    def _with_item_entity(self, row: dict) -> dict:
        item = row.get("item")
        if "entities" in row or not is_id(item, self.num_items):
            return row  # a bad item id is reported by collate_targets
        entity = self.item_entity_ids[int(item)]
        return {**row, "entities": [entity]} if entity >= 0 else row

    def collate_inputs(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """``user_ids`` and ``item_ids`` ``[B]`` from the ``user`` and ``item`` fields."""
        return {
            "user_ids": self._ids(samples, "user", self.num_users),
            "item_ids": self._ids(samples, "item", self.num_items),
        }

    def collate_targets(self, samples: Sequence[dict]) -> dict[str, Tensor]:
        """Inputs plus ``labels`` (0/1, BCE) or ``neg_item_ids`` (BPR)."""
        tensors = self.collate_inputs(samples)
        if self.loss_type == "bpr":
            tensors["neg_item_ids"] = self._ids(samples, "neg_item", self.num_items)
            return tensors
        labels = []
        for i, sample in enumerate(samples):
            label = require_field(sample, "label", i, self.task_type)
            if label not in (0, 1):
                raise DataError(f"sample {i}: field 'label' must be 0 or 1, got {label!r}")
            labels.append(float(label))
        tensors["labels"] = torch.tensor(labels)
        return tensors

    def _ids(self, samples: Sequence[dict], field: str, size: int) -> Tensor:
        ids = [
            require_index(require_field(s, field, i, self.task_type), field, i, size)
            for i, s in enumerate(samples)
        ]
        return torch.tensor(ids, dtype=torch.long)

    def decode(self, output: HeadOutput) -> list[float]:
        """One score per sample: the probability of a positive (BCE) or the raw score (BPR)."""
        scores = output.logits[:, 0] if output.logits.dim() == 2 else output.logits
        if self.loss_type == "bce":
            scores = torch.sigmoid(scores)
        return scores.float().tolist()  # float32 even under bf16 autocast: fewer ties

    @torch.no_grad()
    def cache_items(self, item_ids: Tensor, fused: FusionOutput) -> None:
        """Remember, for ranking, the fused item-only context of ``item_ids`` (one row each).

        Keeps the first ``max_item_entities`` entity states (the collator puts the item's
        own entity first) and ``fused.pooled``.
        """
        if self.cached_entity_states is None:
            self._allocate_cache(fused.entity_states)
        width = min(fused.entity_states.shape[1], self.max_item_entities)
        self.cached_entity_states[item_ids] = 0.0
        self.cached_entity_mask[item_ids] = False
        self.cached_entity_states[item_ids, :width] = fused.entity_states[:, :width]
        self.cached_entity_mask[item_ids, :width] = fused.entity_mask[:, :width].bool()
        self.cached_content[item_ids] = fused.pooled

    def _allocate_cache(self, like: Tensor) -> None:
        shape = (self.num_items, self.max_item_entities, self.d_model)
        self.cached_entity_states = like.new_zeros(shape)
        self.cached_entity_mask = torch.zeros(shape[:2], dtype=torch.bool, device=like.device)
        self.cached_content = like.new_zeros(self.num_items, self.d_model)

    def clear_item_cache(self) -> None:
        """Forget the item cache (ranking then uses id embeddings and histories only)."""
        self.cached_entity_states = None
        self.cached_entity_mask = None
        self.cached_content = None

    @torch.no_grad()
    def score_all(
        self,
        user_ids: Tensor | Sequence[int],
        exclude: dict[int, set[int]] | None = None,
        chunk_elements: int = 2**25,
    ) -> Tensor:
        """Scores ``[U, num_items]`` of every item for each user; excluded items get ``-inf``.

        ``exclude`` maps a user id to item ids; ``None`` excludes each user's training items
        from :meth:`set_history` (pass ``{}`` to exclude nothing). Users are processed in
        chunks so the ``[users, items, entities]`` attention stays under ``chunk_elements``.
        """
        user_ids = torch.as_tensor(user_ids, dtype=torch.long, device=self.seen_offsets.device)
        items = self.item_embedding.weight
        item_bias = self.item_bias.weight[:, 0]
        cached = self.cached_entity_states is not None
        if cached:
            keys = self.entity_key(self.cached_entity_states)
            values = self.entity_value(self.cached_entity_states)
            mask = self.cached_entity_mask
            items = items + self.content_proj(self.cached_content)
        width = self.max_item_entities if cached else 1
        step = max(1, chunk_elements // (self.num_items * width))
        chunks = []
        for start in range(0, len(user_ids), step):
            ids = user_ids[start : start + step]
            users = self.user_vectors(ids)
            scores = users @ items.T + item_bias + self.user_bias(ids) + self.global_bias
            if cached:
                logits = torch.einsum("ud,ned->une", users, keys) / math.sqrt(self.d_model)
                logits = logits.masked_fill(~mask, torch.finfo(logits.dtype).min)
                weights = logits.softmax(dim=-1) * mask.any(dim=-1)[None, :, None]
                affinity = torch.einsum("ud,ned->une", users, values)
                scores = scores + (weights * affinity).sum(dim=-1)
            chunks.append(scores)
        scores = torch.cat(chunks) if chunks else items.new_zeros(0, self.num_items)
        for row, user in enumerate(user_ids.tolist()):
            excluded = self._seen(user) if exclude is None else list(exclude.get(user, ()))
            if excluded:
                scores[row, excluded] = float("-inf")
        return scores

    def _seen(self, user: int) -> list[int]:
        start, end = self.seen_offsets[user : user + 2].tolist()
        return self.seen_items[start:end].tolist()

    def recommend(
        self,
        user_ids: Tensor | Sequence[int],
        k: int = 10,
        exclude: dict[int, set[int]] | None = None,
    ) -> list[list[int]]:
        """The ``k`` best-scoring item ids per user, best first (excluded items never appear)."""
        scores = self.score_all(user_ids, exclude)
        top = scores.topk(min(k, self.num_items), dim=1)
        return [
            [item for item, score in zip(row_items, row_scores) if score != float("-inf")]
            for row_items, row_scores in zip(top.indices.tolist(), top.values.tolist())
        ]

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs) -> None:
        seen = state_dict.get(prefix + "seen_items")
        if seen is not None:  # its length is the number of interactions, unknown until loaded
            self.seen_items = torch.empty_like(seen, device=self.seen_offsets.device)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def config_dict(self) -> dict:
        return {
            "d_model": self.d_model,
            "num_users": self.num_users,
            "num_items": self.num_items,
            "item_entity_ids": self.item_entity_ids,
            "loss": self.loss_type,
            "history_size": self.history_size,
            "max_item_entities": self.max_item_entities,
            "l2": self.l2,
            "item_fields": list(self.item_fields),
        }
