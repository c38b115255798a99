"""Text augmentation: knowledge-aware mention replacement and EDA word deletion/swap.

* **Alias replacement.** Each mention the :class:`~kgmm.EntityLinker` finds is, with
  probability ``alias_rate``, written as another surface form (name, key or alias) of the
  same entity: "top up" -> "add money". The meaning, and so the label, is unchanged.
* **Sibling replacement** (off by default). A mention of an entity whose type is in
  ``sibling_types`` may instead become a sibling entity: same type and at least one shared
  neighbour in the graph ("Visa" -> "Mastercard"). That changes what the text is about, so
  only name the types whose swap keeps your labels right (for intents that depend on the
  card network, ``Product`` is not such a type).
* **Random deletion / swap** (EDA, Wei & Zou 2019): each word is dropped with probability
  ``deletion_rate`` (at least one word stays); ``max(1, int(swap_rate * words))`` random
  pairs of words trade places.

Replacement works on the original text's mention offsets, so it is exact on any Unicode
text; deletion and swap split on whitespace and join words with one space.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import TypeVar

import numpy as np

from kgmm.errors import ConfigError
from kgmm.graph import EntityLinker, KnowledgeGraph

T = TypeVar("T")


class TextAugmenter:
    """Draws one augmented version of a text from a NumPy generator (see the module doc)."""

    def __init__(
        self,
        kg: KnowledgeGraph | None = None,
        linker: EntityLinker | None = None,
        alias_rate: float = 0.0,
        sibling_types: Collection[str] = (),
        sibling_rate: float = 0.0,
        deletion_rate: float = 0.0,
        swap_rate: float = 0.0,
    ) -> None:
        for name, rate in (
            ("alias_rate", alias_rate),
            ("sibling_rate", sibling_rate),
            ("deletion_rate", deletion_rate),
            ("swap_rate", swap_rate),
        ):
            if not 0.0 <= rate <= 1.0:
                raise ConfigError(f"{name} must be in [0, 1], got {rate}")
        if (alias_rate or sibling_rate) and kg is None:
            raise ConfigError("alias_rate and sibling_rate need a knowledge graph: pass kg=")
        if sibling_rate and not sibling_types:
            raise ConfigError(
                "sibling_rate > 0 needs sibling_types: the entity types whose swap keeps the "
                "label (sibling replacement is off unless you name them)"
            )
        self.kg = kg
        self.linker = linker if linker is not None or kg is None else EntityLinker(kg)
        self.alias_rate = alias_rate
        self.sibling_types = frozenset(sibling_types)
        self.sibling_rate = sibling_rate
        self.deletion_rate = deletion_rate
        self.swap_rate = swap_rate
        self._siblings: dict[int, list[int]] = {}

    def augment(self, text: str, rng: np.random.Generator) -> str:
        """One random augmentation of ``text``: replacements, then deletion, then swap."""
        if self.alias_rate or self.sibling_rate:
            text = self.replace_mentions(text, rng)
        if self.deletion_rate:
            text = random_deletion(text, self.deletion_rate, rng)
        if self.swap_rate:
            text = random_swap(text, self.swap_rate, rng)
        return text

    def replace_mentions(self, text: str, rng: np.random.Generator) -> str:
        """``text`` with some linked mentions written as an alias or a sibling entity."""
        pieces, end = [], len(text)
        for mention in reversed(self.linker.link(text)):  # right to left: offsets stay valid
            surface = text[mention.start : mention.end]
            replacement = self._replacement(surface, mention.entity_id, rng)
            pieces.append(text[mention.end : end])
            pieces.append(replacement if replacement is not None else surface)
            end = mention.start
        pieces.append(text[:end])
        return "".join(reversed(pieces))

    def _replacement(self, surface: str, entity_id: int, rng: np.random.Generator) -> str | None:
        draw = rng.random()
        if draw < self.sibling_rate:
            eligible = self.kg.entity(entity_id).type in self.sibling_types
            siblings = self.siblings(entity_id) if eligible else []
            return _pick(surface_forms(self.kg, _pick(siblings, rng)), rng) if siblings else None
        if draw < self.sibling_rate + self.alias_rate:
            folded = surface.casefold()
            others = [f for f in surface_forms(self.kg, entity_id) if f.casefold() != folded]
            if others:
                return _pick(others, rng)
        return None

    def siblings(self, entity_id: int) -> list[int]:
        """Entities of the same type as ``entity_id`` sharing at least one neighbour with it."""
        if entity_id not in self._siblings:
            kg = self.kg
            kind = kg.entity(entity_id).type
            found: set[int] = set()
            for neighbour in _neighbours(kg, entity_id):
                found.update(
                    other
                    for other in _neighbours(kg, neighbour)
                    if other != entity_id and kg.entity(other).type == kind
                )
            self._siblings[entity_id] = sorted(found)
        return self._siblings[entity_id]


def surface_forms(kg: KnowledgeGraph, entity_id: int) -> list[str]:
    """The entity's name, key (``_`` read as a space) and aliases, without case duplicates."""
    entity = kg.entity(entity_id)
    forms: dict[str, str] = {}
    for form in (entity.name, entity.key.replace("_", " "), *entity.aliases):
        if form.strip():
            forms.setdefault(form.casefold(), form)
    return list(forms.values())


def random_deletion(text: str, rate: float, rng: np.random.Generator) -> str:
    """Drop each word with probability ``rate``; one random word stays if all would go."""
    words = text.split()
    if len(words) <= 1:
        return text
    kept = [word for word in words if rng.random() >= rate]
    return " ".join(kept) if kept else words[rng.integers(len(words))]


def random_swap(text: str, rate: float, rng: np.random.Generator) -> str:
    """Swap ``max(1, int(rate * words))`` random pairs of word positions."""
    words = text.split()
    if len(words) < 2:
        return text
    for _ in range(max(1, int(rate * len(words)))):
        first, second = rng.choice(len(words), size=2, replace=False)
        words[first], words[second] = words[second], words[first]
    return " ".join(words)


def _neighbours(kg: KnowledgeGraph, entity_id: int) -> list[int]:
    return kg.neighbors([entity_id], hops=1, max_entities=kg.num_entities)[1:]


def _pick(options: Sequence[T], rng: np.random.Generator) -> T:
    return options[rng.integers(len(options))]
