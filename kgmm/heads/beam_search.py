"""Batched beam search with GNMT length normalisation over any incremental decoder."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

#: ``step(last_tokens [N, 1], position, state) -> (log_probs [N, V], state)``
StepFn = Callable[[Tensor, int, Any], tuple[Tensor, Any]]
#: ``reorder(state, rows [N]) -> state`` keeps, for every beam, the state of its parent beam.
ReorderFn = Callable[[Any, Tensor], Any]


def gnmt_length_penalty(lengths: Tensor, alpha: float) -> Tensor:
    """``((5 + length) / 6) ** alpha`` (Wu et al., 2016)."""
    return ((5.0 + lengths.float()) / 6.0) ** alpha


def beam_search(
    step: StepFn,
    reorder: ReorderFn,
    state: Any,
    batch_size: int,
    beam_size: int,
    bos_id: int,
    eos_id: int,
    pad_id: int,
    max_new_tokens: int,
    length_penalty: float,
    device: torch.device | str = "cpu",
) -> tuple[Tensor, Tensor]:
    """Best sequence per batch row: token ids ``[B, L]`` (no BOS; EOS then pad) and scores ``[B]``.

    ``state`` and ``step`` work on ``B * beam_size`` rows, beam-minor (row ``b * beam_size + k``).
    Every step keeps the ``beam_size`` best candidates of each batch row ranked by
    ``log P / length_penalty``; a finished beam keeps its slot and can only be extended with pad
    at no cost. A row stops (all its beams freeze) once its best-ranked beam has finished, so a
    row's result does not depend on the rest of the batch. With ``beam_size=1`` this is greedy
    decoding. Scores are length-normalised log-probabilities.
    """
    rows = batch_size * beam_size
    tokens = torch.full((rows, 1), bos_id, dtype=torch.long, device=device)
    scores = torch.zeros(batch_size, beam_size, device=device)
    scores[:, 1:] = float("-inf")  # all beams start equal: expand only the first
    scores = scores.view(rows)
    lengths = torch.zeros(rows, dtype=torch.long, device=device)
    finished = torch.zeros(rows, dtype=torch.bool, device=device)
    batch_offset = torch.arange(batch_size, device=device)[:, None] * beam_size
    for position in range(max_new_tokens):
        log_probs, state = step(tokens[:, -1:], position, state)
        log_probs = log_probs.float()
        vocab = log_probs.shape[-1]
        if finished.any():
            frozen = torch.full((vocab,), float("-inf"), device=device)
            frozen[pad_id] = 0.0
            log_probs = torch.where(finished[:, None], frozen, log_probs)
        candidates = scores[:, None] + log_probs
        new_lengths = lengths + (~finished).long()
        ranked = candidates / gnmt_length_penalty(new_lengths, length_penalty)[:, None]
        top = ranked.view(batch_size, beam_size * vocab).topk(beam_size, dim=1).indices
        parents = (batch_offset + top // vocab).view(rows)
        next_tokens = (top % vocab).view(rows)
        scores = candidates.view(batch_size, -1).gather(1, top).view(rows)
        lengths = new_lengths[parents]
        finished = finished[parents] | (next_tokens == eos_id)
        row_done = finished.view(batch_size, beam_size)[:, 0]  # candidates come sorted
        finished = finished | row_done.repeat_interleave(beam_size)
        tokens = torch.cat([tokens[parents], next_tokens[:, None]], dim=1)
        state = reorder(state, parents)
        if finished.all():
            break
    final = (scores / gnmt_length_penalty(lengths, length_penalty)).view(batch_size, beam_size)
    best_scores, best = final.max(dim=1)
    best_rows = batch_offset.view(batch_size) + best
    return tokens[best_rows, 1:], best_scores
