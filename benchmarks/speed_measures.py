"""Measuring tools the speed benchmarks share: the matmul peak, FLOPs of a step, clocks.

* ``matmul_peak``: FLOP/s of a square ``torch.matmul`` loop (the ceiling model FLOP
  utilisation is a ratio of), on the same device, dtype and thread count as the run;
  ``matmul_rate`` the same for any list of shapes, e.g. ``encoder_layer_shapes``: the rate
  a model's own matmuls can reach, so a low MFU can be told from small matmuls;
  ``linear_rate`` the same for ``nn.Linear`` layers, in fp32 or int8 (dynamic, as
  ``kgmm.model.int8_dynamic`` runs, or static: the int8 kernel alone);
* ``counted_flops``: the FLOPs ``torch.utils.flop_counter.FlopCounterMode`` counts while a
  function runs (matmuls, convolutions and attention; elementwise work is not counted);
* ``synchronize``: wait for queued GPU work, so wall clocks measure finished work.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable

import torch
from torch.utils.flop_counter import FlopCounterMode

from kgmm.model import int8_dynamic


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_flops(shapes: list[tuple[int, int, int]]) -> int:
    """FLOPs of the matmuls ``[m, k] @ [k, n]`` of ``shapes``: a multiply and an add each."""
    return sum(2 * m * k * n for m, k, n in shapes)


def best_rate(
    one_pass: Callable[[], None], flops: int, device: torch.device, seconds: float = 1.0
) -> float:
    """FLOP/s of ``one_pass`` (``flops`` each) run back to back: the best of 3 rounds of about
    ``seconds / 3`` each (the best round is the least disturbed by other work)."""
    best = 0.0
    for round_ in range(4):  # round 0 warms up
        count, start = 0, time.perf_counter()
        while True:
            one_pass()
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


def matmul_rate(
    shapes: list[tuple[int, int, int]],
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    seconds: float = 1.0,
) -> float:
    """FLOP/s of back-to-back matmuls ``[m, k] @ [k, n]`` of ``shapes`` in ``dtype``."""
    pairs = [
        (torch.randn(m, k, device=device).to(dtype), torch.randn(k, n, device=device).to(dtype))
        for m, k, n in shapes
    ]

    def one_pass() -> None:
        for a, b in pairs:
            torch.matmul(a, b)

    return best_rate(one_pass, matmul_flops(shapes), device, seconds)


def linear_rate(
    shapes: list[tuple[int, int, int]], int8: str | None = None, seconds: float = 1.0
) -> float:
    """Multiply-accumulate rate (2 ops each, like FLOP/s) of back-to-back ``nn.Linear``
    layers ``[m, k] -> [m, n]`` of ``shapes`` on the CPU, bias and module calls included.

    ``int8="dynamic"``: those layers after ``kgmm.model.int8_dynamic`` (activations quantised
    in each call, as a quantised model runs); ``int8="static"``: int8 linears fed inputs
    quantised ahead of time (``torch.ao.nn.quantized.Linear``): torch's int8 kernel at its own
    rate, quantisation left out."""
    linears = torch.nn.ModuleList(torch.nn.Linear(k, n) for _, k, n in shapes)
    inputs = [torch.randn(m, k) for m, k, _ in shapes]
    if int8 == "dynamic":
        linears = int8_dynamic(linears)
    elif int8 == "static":
        linears, inputs = _static_int8(linears, inputs)
    elif int8 is not None:
        raise ValueError(f"int8 must be None, 'dynamic' or 'static', got {int8!r}")

    def one_pass() -> None:
        with torch.inference_mode():
            for linear, x in zip(linears, inputs):
                linear(x)

    return best_rate(one_pass, matmul_flops(shapes), torch.device("cpu"), seconds)


def _static_int8(
    linears: torch.nn.ModuleList, inputs: list[torch.Tensor]
) -> tuple[list[torch.nn.Module], list[torch.Tensor]]:
    """Int8 copies of ``linears`` (per-tensor weight scales) and ``inputs`` quantised to
    uint8 once, with scales from their ranges: timing then leaves quantisation out."""
    from torch.ao.nn.quantized import Linear as QuantizedLinear

    quantised, quantised_inputs = [], []
    with warnings.catch_warnings():  # quantised tensors are deprecated but ship with 2.14
        warnings.simplefilter("ignore", UserWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        for linear, x in zip(linears, inputs):
            layer = QuantizedLinear(linear.in_features, linear.out_features)
            weight_scale = float(linear.weight.abs().max()) / 127
            weight = torch.quantize_per_tensor(linear.weight.detach(), weight_scale, 0, torch.qint8)
            layer.set_weight_bias(weight, linear.bias.detach())
            # The output's quantisation only sets where values clip, not the time taken.
            layer.scale, layer.zero_point = float(x.abs().max()) / 64, 128
            quantised.append(layer)
            scale = float(x.max() - x.min()) / 255
            zero_point = int(round(-float(x.min()) / scale))
            quantised_inputs.append(torch.quantize_per_tensor(x, scale, zero_point, torch.quint8))
    return quantised, quantised_inputs


def matmul_peak(
    device: torch.device,
    dtype: torch.dtype = torch.bfloat16,
    size: int = 2048,
    seconds: float = 1.0,
) -> float:
    """FLOP/s of ``size x size`` matmuls: the ceiling model FLOP utilisation is a ratio of."""
    return matmul_rate([(size, size, size)], device, dtype, seconds)


def encoder_layer_shapes(
    rows: int, hidden: int, intermediate: int, backward: bool = True
) -> list[tuple[int, int, int]]:
    """The ``(m, k, n)`` matmuls of one transformer layer's linears over ``rows`` tokens:
    query, key, value and output (``hidden x hidden``), feed-forward up and down, each
    forward and, for a training step (``backward``), input gradient and weight gradient."""
    linears = [(hidden, hidden)] * 4 + [(hidden, intermediate), (intermediate, hidden)]
    if not backward:
        return [(rows, k, n) for k, n in linears]
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
