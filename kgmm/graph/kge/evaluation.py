"""Rank-based link-prediction evaluation (head and tail prediction, filtered or raw).

A test triple ``(h, r, t)`` is ranked twice: its tail among all entities for ``(h, r, ?)``
and its head among all entities for ``(?, r, t)``. In the filtered setting every OTHER
candidate that forms a known triple (train, valid or test) is removed before ranking.
Ties count half: rank = 1 + #(scores strictly greater) + #(ties) / 2, the "realistic"
rank of PyKEEN, so a model that scores everything equal gets the middle rank, not rank 1.
"""

from __future__ import annotations

import numpy as np
import torch

from kgmm.errors import ConfigError

HITS_AT = (1, 3, 10)


class KnownTriples:
    """A sorted index of known triples: for a batch of ``(entity, relation)`` queries it
    returns every known answer as (row, column) pairs, fully vectorised."""

    def __init__(self, triples: np.ndarray, num_entities: int, num_relations: int) -> None:
        triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        self.num_relations = num_relations
        self._tails = self._index(triples[:, 0], triples[:, 1], triples[:, 2])
        self._heads = self._index(triples[:, 2], triples[:, 1], triples[:, 0])

    def _index(
        self, anchor: np.ndarray, relation: np.ndarray, answer: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        keys = anchor * self.num_relations + relation
        order = np.lexsort((answer, keys))
        return keys[order], answer[order]

    def tails(self, h: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, known tail) pairs for the queries ``(h[i], r[i], ?)``."""
        return self._lookup(self._tails, h, r)

    def heads(self, r: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(query row, known head) pairs for the queries ``(?, r[i], t[i])``."""
        return self._lookup(self._heads, t, r)

    def _lookup(
        self, index: tuple[np.ndarray, np.ndarray], anchor: np.ndarray, relation: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        keys, answers = index
        query = np.asarray(anchor, dtype=np.int64) * self.num_relations + relation
        start = np.searchsorted(keys, query, side="left")
        counts = np.searchsorted(keys, query, side="right") - start
        rows = np.repeat(np.arange(len(query)), counts)
        offsets = np.arange(counts.sum()) - np.repeat(np.cumsum(counts) - counts, counts)
        return rows, answers[np.repeat(start, counts) + offsets]


@torch.no_grad()
def rank_triples(
    model: torch.nn.Module,
    triples: np.ndarray | torch.Tensor,
    known_triples: np.ndarray | torch.Tensor | None = None,
    filtered: bool = True,
    batch_size: int = 256,
) -> np.ndarray:
    """``[2, N]`` realistic ranks: row 0 for head prediction, row 1 for tail prediction.

    ``model`` needs ``score_all_tails(h, r)``, ``score_all_heads(r, t)`` and
    ``num_entities``/``num_relations``; ``known_triples`` (train + valid + test) is the
    filter set and is required when ``filtered`` is true.
    """
    triples = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
    known = None
    if filtered:
        if known_triples is None:
            raise ConfigError("filtered ranking needs known_triples (train + valid + test)")
        known = KnownTriples(np.asarray(known_triples), model.num_entities, model.num_relations)
    first_parameter = next(iter(model.parameters()), None)
    device = first_parameter.device if first_parameter is not None else torch.device("cpu")
    was_training = model.training
    model.eval()
    head_ranks, tail_ranks = [], []
    for start in range(0, len(triples), batch_size):
        batch = triples[start : start + batch_size]
        h, r, t = (torch.as_tensor(batch[:, i], device=device) for i in range(3))
        known_tails = known.tails(batch[:, 0], batch[:, 1]) if known else None
        known_heads = known.heads(batch[:, 1], batch[:, 2]) if known else None
        tail_ranks.append(_ranks(model.score_all_tails(h, r).float(), t, known_tails))
        head_ranks.append(_ranks(model.score_all_heads(r, t).float(), h, known_heads))
    model.train(was_training)
    if not head_ranks:
        return np.zeros((2, 0))
    return np.stack([np.concatenate(head_ranks), np.concatenate(tail_ranks)])


def _ranks(
    scores: torch.Tensor,
    true: torch.Tensor,
    known: tuple[np.ndarray, np.ndarray] | None,
) -> np.ndarray:
    rows = torch.arange(len(true), device=scores.device)
    true_scores = scores[rows, true].clone()
    if known is not None:
        known_rows, known_cols = (torch.as_tensor(x, device=scores.device) for x in known)
        scores[known_rows, known_cols] = float("-inf")
    scores[rows, true] = float("-inf")
    greater = (scores > true_scores[:, None]).sum(1)
    ties = (scores == true_scores[:, None]).sum(1)
    return (1.0 + greater + 0.5 * ties).cpu().numpy()


def rank_metrics(ranks: np.ndarray) -> dict[str, float]:
    """MRR and Hits@1/3/10 over all given ranks (head and tail ranks pooled)."""
    ranks = np.asarray(ranks, dtype=np.float64).ravel()
    if ranks.size == 0:
        return {"mrr": float("nan"), **{f"hits@{k}": float("nan") for k in HITS_AT}}
    metrics = {"mrr": float(np.mean(1.0 / ranks))}
    metrics.update({f"hits@{k}": float(np.mean(ranks <= k)) for k in HITS_AT})
    return metrics
