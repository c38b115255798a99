"""Small value types of the knowledge-graph layer."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Entity:
    """One KG entity. ``key`` is the label the triples use; ``name`` is for display."""

    id: int
    key: str
    name: str
    aliases: tuple[str, ...] = ()
    description: str = ""
    type: str = ""


@dataclass(frozen=True)
class Mention:
    """A span ``text[start:end]`` linked to ``entity_id`` with a confidence ``score``."""

    start: int
    end: int
    entity_id: int
    score: float = 1.0


@dataclass
class EntityRecord:
    """Attributes of an entity as read from a file, before ids are assigned."""

    key: str
    name: str = ""
    aliases: list[str] = field(default_factory=list)
    description: str = ""
    type: str = ""

    def update(self, other: "EntityRecord") -> None:
        """Fill empty fields from ``other`` and add its new aliases."""
        self.name = self.name or other.name
        self.description = self.description or other.description
        self.type = self.type or other.type
        for alias in other.aliases:
            if alias not in self.aliases:
                self.aliases.append(alias)
