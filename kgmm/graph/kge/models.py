"""KG embedding scoring models: TransE, DistMult, ComplEx and RotatE.

Every model keeps one entity table ``entity`` of shape ``[num_entities, dim]``. For the
complex-valued models (ComplEx, RotatE) its first ``dim / 2`` columns are the real parts
and the last ``dim / 2`` the imaginary parts, so the table is directly a real feature matrix.

Scores are "higher is more plausible". ``score`` takes index tensors that broadcast
against each other; ``score_all_tails`` / ``score_all_heads`` score a batch of queries
against every entity at once (1-N scoring). With ``reciprocal=True`` the relation table
has a second block of inverse relations and head prediction ``(?, r, t)`` is answered as
tail prediction ``(t, r^-1, ?)`` (Lacroix et al. 2018).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from kgmm.errors import ConfigError


class KGEModel(nn.Module):
    """Base class: entity and relation tables plus the 1-N scoring interface."""

    name = ""
    complex_valued = False

    def __init__(
        self,
        num_entities: int,
        num_relations: int,
        dim: int,
        *,
        reciprocal: bool = False,
        gamma: float = 0.0,
        init_scale: float | None = None,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        if dim < 1 or (self.complex_valued and dim % 2):
            kind = "an even number" if self.complex_valued else "positive"
            raise ConfigError(f"{self.name} needs dim to be {kind}, got {dim}")
        self.num_entities = num_entities
        self.num_relations = num_relations
        self.dim = dim
        self.reciprocal = reciprocal
        self.gamma = gamma
        rows = 2 * num_relations if reciprocal else num_relations
        self.entity = nn.Parameter(self._initial_entities(num_entities, init_scale, generator))
        self.relation = nn.Parameter(self._initial_relations(rows, init_scale, generator))

    # ------------------------------------------------------------------ initialisation
    def _initial_entities(
        self, rows: int, scale: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        scale = self._default_scale() if scale is None else scale
        return torch.empty(rows, self.dim).uniform_(-scale, scale, generator=generator)

    def _initial_relations(
        self, rows: int, scale: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        return self._initial_entities(rows, scale, generator)

    def _default_scale(self) -> float:
        return 1.0 / math.sqrt(self.dim)

    # ------------------------------------------------------------------ scoring
    def score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Scores of the triples ``(h, r, t)``; the index tensors broadcast together."""
        return self._score(self._entities(h), self._relations(r), self._entities(t))

    def score_heads(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Like :meth:`score`, but as the model answers ``(?, r, t)`` (used for head
        corruption; differs from :meth:`score` only for reciprocal models)."""
        if self.reciprocal:
            return self.score(t, r + self.num_relations, h)
        return self.score(h, r, t)

    def score_all_tails(self, h: torch.Tensor, r: torch.Tensor) -> torch.Tensor:
        """``[B, num_entities]`` scores of ``(h[i], r[i], e)`` for every entity ``e``."""
        return self._score_tails(self._entities(h), self._relations(r), self.entity)

    def score_all_heads(self, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """``[B, num_entities]`` scores of ``(e, r[i], t[i])`` for every entity ``e``."""
        if self.reciprocal:
            return self.score_all_tails(t, r + self.num_relations)
        return self._score_heads(self._relations(r), self._entities(t), self.entity)

    def factors(
        self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        """Per-coordinate magnitudes of the embeddings a batch uses, for N3/L2 penalties."""
        return tuple(
            _modulus(x) if self.complex_valued else x.abs()
            for x in (self._entities(h), self._relations(r), self._entities(t))
        )

    def _entities(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.entity)

    def _relations(self, ids: torch.Tensor) -> torch.Tensor:
        return F.embedding(ids, self.relation)

    def _score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score_tails(self, h: torch.Tensor, r: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _score_heads(self, r: torch.Tensor, t: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError


class TransE(KGEModel):
    """``gamma - ||h + r - t||_1`` (Bordes et al. 2013)."""

    name = "transe"

    def _default_scale(self) -> float:
        return (self.gamma + 2.0) / self.dim

    def _score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return self.gamma - (h + r - t).abs().sum(-1)

    def _score_tails(self, h: torch.Tensor, r: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return self.gamma - torch.cdist(h + r, all_e, p=1)

    def _score_heads(self, r: torch.Tensor, t: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return self.gamma - torch.cdist(t - r, all_e, p=1)


class DistMult(KGEModel):
    """``<h, r, t>`` (Yang et al. 2015)."""

    name = "distmult"

    def _score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        return (h * r * t).sum(-1)

    def _score_tails(self, h: torch.Tensor, r: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return (h * r) @ all_e.T

    def _score_heads(self, r: torch.Tensor, t: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return (r * t) @ all_e.T


class ComplEx(KGEModel):
    """``Re(<h, r, conj(t)>)`` over complex vectors (Trouillon et al. 2016)."""

    name = "complex"
    complex_valued = True

    def _score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        hr_re, hr_im = _complex_product(h, r)
        t_re, t_im = t.chunk(2, dim=-1)
        return (hr_re * t_re + hr_im * t_im).sum(-1)

    def _score_tails(self, h: torch.Tensor, r: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return torch.cat(_complex_product(h, r), dim=-1) @ all_e.T

    def _score_heads(self, r: torch.Tensor, t: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        # Re(h * q) with q = r * conj(t): h_re q_re - h_im q_im
        t_re, t_im = t.chunk(2, dim=-1)
        q_re, q_im = _complex_product(r, torch.cat([t_re, -t_im], dim=-1))
        return torch.cat([q_re, -q_im], dim=-1) @ all_e.T


class RotatE(KGEModel):
    """``gamma - sum_k |h_k * r_k - t_k|`` with ``|r_k| = 1`` (Sun et al. 2019).

    The relation table holds ``dim / 2`` phases per relation; ``relation`` rows are angles.
    """

    name = "rotate"
    complex_valued = True

    def _default_scale(self) -> float:
        return (self.gamma + 2.0) / (self.dim // 2)

    def _initial_relations(
        self, rows: int, scale: float | None, generator: torch.Generator | None
    ) -> torch.Tensor:
        return torch.empty(rows, self.dim // 2).uniform_(-math.pi, math.pi, generator=generator)

    def factors(
        self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor
    ) -> tuple[torch.Tensor, ...]:
        return (_modulus(self._entities(h)), _modulus(self._entities(t)))

    def _score(self, h: torch.Tensor, r: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        hr_re, hr_im = _rotate(h, r)
        t_re, t_im = t.chunk(2, dim=-1)
        return self.gamma - _hypot(hr_re - t_re, hr_im - t_im).sum(-1)

    def _score_tails(self, h: torch.Tensor, r: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        return self._distance_to_all(torch.cat(_rotate(h, r), dim=-1), all_e)

    def _score_heads(self, r: torch.Tensor, t: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        # |h * r - t| = |h - t * conj(r)| because |r| = 1
        return self._distance_to_all(torch.cat(_rotate(t, -r), dim=-1), all_e)

    def _distance_to_all(self, query: torch.Tensor, all_e: torch.Tensor) -> torch.Tensor:
        q_re, q_im = query.chunk(2, dim=-1)
        e_re, e_im = all_e.chunk(2, dim=-1)
        distance = _hypot(q_re[:, None, :] - e_re[None], q_im[:, None, :] - e_im[None])
        return self.gamma - distance.sum(-1)


MODELS: dict[str, type[KGEModel]] = {cls.name: cls for cls in (TransE, DistMult, ComplEx, RotatE)}


def build_model(
    name: str, num_entities: int, num_relations: int, dim: int, **options: object
) -> KGEModel:
    """A fresh model by name (``transe``, ``distmult``, ``complex``, ``rotate``)."""
    cls = MODELS.get(name.lower())
    if cls is None:
        raise ConfigError(f"unknown KG embedding model {name!r}; choose one of {sorted(MODELS)}")
    return cls(num_entities, num_relations, dim, **options)


def _complex_product(a: torch.Tensor, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    a_re, a_im = a.chunk(2, dim=-1)
    b_re, b_im = b.chunk(2, dim=-1)
    return a_re * b_re - a_im * b_im, a_re * b_im + a_im * b_re


def _rotate(x: torch.Tensor, phase: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x_re, x_im = x.chunk(2, dim=-1)
    cos, sin = torch.cos(phase), torch.sin(phase)
    return x_re * cos - x_im * sin, x_re * sin + x_im * cos


def _modulus(x: torch.Tensor) -> torch.Tensor:
    x_re, x_im = x.chunk(2, dim=-1)
    return _hypot(x_re, x_im)


def _hypot(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``sqrt(a^2 + b^2)`` with a finite gradient at zero."""
    return torch.sqrt(a * a + b * b + 1e-12)
