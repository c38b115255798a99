"""``Collator``: sample dicts in, one batch of tensors out (runs in DataLoader workers).

Media are decoded, texts tokenised and entities linked and expanded here, once per batch,
so the model's ``forward`` only ever sees tensors.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from kgmm.errors import DataError, KGMMError
from kgmm.graph import KnowledgeGraph

MODALITIES = ("text", "image", "audio")
LINK_CACHE_SIZE = 100_000

Preprocessor = Callable[[list[Any]], dict[str, torch.Tensor]]


class Collator:
    """Turns a list of sample dicts into the keyword arguments of ``FusedModel.forward``.

    Args:
        preprocessors: modality name -> the encoder's preprocessor.
        kg, linker: the graph and its :class:`EntityLinker`; ``None`` (or ``link=False``)
            gives every sample an empty entity set.
        hops, max_entities: neighbour expansion of the linked entities.
        targets: the task head's ``collate_targets`` (sample dicts -> target tensors).
        expand: turns each sample into several encoder rows (multiple-choice options);
            targets are still collated from the original samples.
        input_fields: sample fields the task head predicts from besides the modalities and
            ``entities`` (recommendation: ``user``, ``item``); a sample with none of them
            all is a :class:`DataError`, not a prediction from an empty input.
    """

    def __init__(
        self,
        preprocessors: dict[str, Preprocessor],
        kg: KnowledgeGraph | None = None,
        linker: Any | None = None,
        hops: int = 1,
        max_entities: int = 64,
        targets: Callable[[list[dict]], dict[str, torch.Tensor]] | None = None,
        expand: Callable[[list[dict]], list[dict]] | None = None,
        link: bool = True,
        input_fields: Sequence[str] = (),
    ) -> None:
        self.preprocessors = preprocessors
        self.kg = kg
        self.linker = linker
        self.hops = hops
        self.max_entities = max_entities
        self.targets = targets
        self.expand = expand
        self.link = link and kg is not None
        self.inputs = (*MODALITIES, "entities", *input_fields)
        self._link_cache: dict[str, list[int]] = {}

    def __call__(self, samples: Sequence[dict]) -> dict[str, Any]:
        samples = list(samples)
        if not samples:
            raise DataError("cannot collate an empty list of samples")
        for index, sample in enumerate(samples):
            if not isinstance(sample, dict):
                raise DataError(f"sample {index} is a {type(sample).__name__}, expected a dict")
            if not any(sample.get(field) is not None for field in self.inputs):
                raise DataError(
                    f"sample {index} (fields: {', '.join(map(str, sample)) or 'none'}) has "
                    f"none of {', '.join(self.inputs)}: nothing to predict from"
                )
        rows = self.expand(samples) if self.expand is not None else samples
        batch: dict[str, Any] = {"batch_size": len(rows)}
        present = [m for m in MODALITIES if any(r.get(m) is not None for r in rows)]
        for modality in present:
            if modality not in self.preprocessors:
                raise DataError(
                    f"samples have {modality!r} but the model has no {modality} encoder "
                    f"(it has {sorted(self.preprocessors) or 'none'})"
                )
            batch[modality] = self._modality(modality, rows)
        if not present:
            raise DataError(
                f"no sample in the batch has any of {', '.join(self.preprocessors)}; "
                "each sample needs at least one modality"
            )
        batch.update(self._entities(rows))
        if self.targets is not None:
            batch.update(self.targets(samples))
        return batch

    def _modality(self, modality: str, rows: list[dict]) -> dict[str, torch.Tensor]:
        index = [i for i, row in enumerate(rows) if row.get(modality) is not None]
        items = [rows[i][modality] for i in index]
        preprocess = self.preprocessors[modality]
        try:
            inputs = preprocess(items)
        except KGMMError:
            for position, item in zip(index, items):  # find and name the failing sample
                try:
                    preprocess([item])
                except KGMMError as error:
                    raise DataError(f"sample {position}, field {modality!r}: {error}") from None
            raise
        return {**inputs, "index": torch.tensor(index, dtype=torch.long)}

    def _entities(self, rows: list[dict]) -> dict[str, torch.Tensor]:
        sets = [self._entity_set(i, row) for i, row in enumerate(rows)]
        width = max((len(ids) for ids, _, _ in sets), default=0)
        shape = (len(rows), width)
        ids = torch.zeros(shape, dtype=torch.long)
        relations = torch.zeros(shape, dtype=torch.long)
        hops = torch.zeros(shape, dtype=torch.long)
        mask = torch.zeros(shape, dtype=torch.bool)
        for row, (row_ids, row_relations, row_hops) in enumerate(sets):
            n = len(row_ids)
            ids[row, :n] = torch.as_tensor(row_ids, dtype=torch.long)
            relations[row, :n] = torch.as_tensor(row_relations, dtype=torch.long)
            hops[row, :n] = torch.as_tensor(row_hops, dtype=torch.long)
            mask[row, :n] = True
        return {
            "entity_ids": ids,
            "entity_mask": mask,
            "entity_relations": relations,
            "entity_hops": hops,
        }

    def _entity_set(self, index: int, row: dict) -> tuple[Any, Any, Any]:
        if not self.link:
            return [], [], []
        seeds: list[int] = []
        for key in row.get("entities") or ():
            try:
                seeds.append(key if isinstance(key, int) else self.kg.entity_id(str(key)))
            except KGMMError as error:
                raise DataError(f"sample {index}, field 'entities': {error}") from None
        text = row.get("text")
        pieces = [text] if isinstance(text, str) else list(text or ())
        for piece in pieces:
            seeds.extend(self._linked(str(piece)))
        if not seeds:
            return [], [], []
        hood = self.kg.expand(seeds, hops=self.hops, max_entities=self.max_entities)
        return hood.entity_ids, hood.relations, hood.hops

    def _linked(self, text: str) -> list[int]:
        if self.linker is None:
            return []
        cached = self._link_cache.get(text)
        if cached is None:
            cached = [m.entity_id for m in self.linker.link(text)]
            if len(self._link_cache) >= LINK_CACHE_SIZE:
                self._link_cache.clear()
            self._link_cache[text] = cached
        return cached
