"""Measuring tools the speed benchmarks share: the matmul peak, FLOPs of a step, clocks.

* ``matmul_peak``: FLOP/s of a square ``torch.matmul`` loop (the ceiling model FLOP
  utilisation is a ratio of), on the same device, dtype and thread count as the run;
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


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    size: int = 2048,
    seconds: float = 1.0,
) -> float:
    """FLOP/s of back-to-back ``size x size`` matmuls in ``dtype``: the best of 3 rounds of
    about ``seconds / 3`` each (the best round is the least disturbed by other work)."""
    a = torch.randn(size, size, device=device).to(dtype)
    b = torch.randn(size, size, device=device).to(dtype)
    torch.matmul(a, b)
    synchronize(device)
    best = 0.0
    for _ in range(3):
        count, start = 0, time.perf_counter()
        while True:
            torch.matmul(a, b)
            count += 1
            if count % 4 == 0:
                synchronize(device)
                elapsed = time.perf_counter() - start
                if elapsed >= seconds / 3:
                    break
        best = max(best, 2 * size**3 * count / elapsed)
    return best


def counted_flops(step: Callable[[], None]) -> int:
    """FLOPs of one call of ``step`` (e.g. a forward and backward pass on one batch)."""
    counter = FlopCounterMode(display=False)
    with counter:
        step()
    return counter.get_total_flops()


def percentile(values: list[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of ``values``, linearly interpolated."""
    return float(torch.quantile(torch.tensor(values, dtype=torch.float64), q / 100))
