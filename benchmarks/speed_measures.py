"""Measuring tools the speed benchmarks share: the matmul peak, FLOPs of a step, clocks.

* ``matmul_peak``: FLOP/s of a square ``torch.matmul`` loop (the ceiling model FLOP
  utilisation is a ratio of), on the same device, dtype and thread count as the run;
  ``matmul_rate`` the same for any list of shapes, e.g. ``encoder_layer_shapes``: the rate
  a model's own matmuls can reach, so a low MFU can be told from small matmuls;
* ``counted_flops``: the FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts while a
  function runs (matmuls, convolutions and attention; elementwise work is not counted);
* ``synchronize``: wait for queued GPU work, so wall clocks measure finished work.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_rate(
    shapes: list[tuple[int, int, int]],
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    seconds: float = 1.0,
) -> float:
    """FLOP/s of back-to-back matmuls ``[m, k] @ [k, n]`` of ``shapes`` in ``dtype``: the best
    of 3 rounds of about ``seconds / 3`` each (the best round is the least disturbed by other
    work)."""
    pairs = [
        (torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype))
        for m, k, n in shapes
    ]
    flops = sum(2 * m * k * n for m, k, n in shapes)
    best = 0.0
    for round_ in range(4):  # round 0 warms up
        count, start = 0, time.perf_counter()
        while True:
            for a, b in pairs:
                torch.matmul(a, b)
            count += 1
            # A GPU synchronisation per pass would lower its rate; a CPU needs none, and on
            # one without bf16 hardware a single 2048x2048 bf16 matmul can take a minute.
            if device.type == "cpu" or count % 8 == 0:
                synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / 3:
                    break
        if round_:
            best = max(best, flops * count / elapsed)
    return best


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    size: int = 2048,
    seconds: float = 1.0,
) -> float:
    """FLOP/s of ``size x size`` matmuls: the ceiling model FLOP utilisation is a ratio of."""
    return matmul_rate([(size, size, size)], device, dtype, seconds)


def encoder_layer_shapes(rows: int, hidden: int, intermediate: int) -> list[tuple[int, int, int]]:
    """The ``(m, k, n)`` matmuls of one transformer layer's linears in a training step over
    ``rows`` tokens: query, key, value and output (``hidden x hidden``), feed-forward up and
    down, each forward, input gradient and weight gradient."""
    linears = [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]
    return [shape for k, n in linears for shape in ((rows, k, n), (rows, n, k), (k, rows, n))]


def counted_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (e.g. a forward and backward pass on one batch)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100))
