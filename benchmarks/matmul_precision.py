"""Matmul speed in fp32, bf16 and int8 on this machine: should training use bf16 here, and
can int8 or bf16 speed up inference?

Times ``torch.matmul`` in both float precisions, on a square ``--size`` matmul, on the
matmuls of one MiniLM layer's linears in a training step over ``--tokens`` rows (forward,
input gradient and weight gradient) and on the same linears' forward alone (inference).
On a CPU the inference workload is also timed as ``nn.Linear`` layers, in fp32 and as
dynamic int8 linears (what ``benchmarks/inference.py``'s ``int8 dynamic`` variant runs,
activation quantisation included): int8/fp32 compares the two alike, bias and module calls
included; ``int8_static`` feeds int8 linears inputs quantised ahead of time, torch's int8
kernel at its own rate, quantisation left out. Prints the bf16/fp32 and
int8/fp32 ratios beside what ``kgmm.device.native_bf16`` says of the device (AMX or
AVX-512 BF16 on a CPU, a bf16 GPU), which is what ``TrainingArguments(bf16="auto")``
follows.

    python benchmarks/matmul_precision.py --threads 1
    python benchmarks/matmul_precision.py --device cuda
    python benchmarks/matmul_precision.py --quick                     # CI smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
from banking77_setup import write_results
from speed_measures import encoder_layer_shapes, linear_rate, matmul_rate

from kgmm.device import native_bf16
from kgmm.metrics import format_table

MINILM_HIDDEN, MINILM_INTERMEDIATE = 384, 1536
PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16}
INT8_COLUMNS = (
    "fp32_linear_gflops",
    "int8_gops",
    "int8_over_fp32",
    "int8_static_gops",
    "int8_static_over_fp32",
)


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device)
    workloads = {
        f"{options.size}x{options.size} square": [(options.size,) * 3],
        f"MiniLM layer, {options.tokens} tokens": encoder_layer_shapes(
            options.tokens, MINILM_HIDDEN, MINILM_INTERMEDIATE
        ),
    }
    inference = f"MiniLM layer forward, {options.tokens} tokens"
    workloads[inference] = encoder_layer_shapes(
        options.tokens, MINILM_HIDDEN, MINILM_INTERMEDIATE, backward=False
    )
    rows = []
    for workload, shapes in workloads.items():
        rates = {
            name: matmul_rate(shapes, device, dtype, options.seconds)
            for name, dtype in PRECISIONS.items()
        }
        row = {
            "workload": workload,
            "fp32_gflops": rates["fp32"] / 1e9,
            "bf16_gflops": rates["bf16"] / 1e9,
            "bf16_over_fp32": rates["bf16"] / rates["fp32"],
        }
        if workload == inference and device.type == "cpu":  # int8 kernels are CPU-only
            fp32 = linear_rate(shapes, seconds=options.seconds)
            int8 = linear_rate(shapes, int8="dynamic", seconds=options.seconds)
            static = linear_rate(shapes, int8="static", seconds=options.seconds)
            row.update(
                fp32_linear_gflops=fp32 / 1e9,
                int8_gops=int8 / 1e9,
                int8_over_fp32=int8 / fp32,
                int8_static_gops=static / 1e9,
                int8_static_over_fp32=static / fp32,
            )
        rows.append(row)
    columns = [*rows[0], *INT8_COLUMNS]
    native = native_bf16(device)
    print(format_table(rows, columns, float_format=".3f"))
    print(
        f"{device}, {torch.get_num_threads()} threads, capability "
        f"{torch.backends.cpu.get_cpu_capability()}: bf16 matmul hardware {native}, so "
        f"bf16='auto' trains in {'bf16' if native else 'fp32'}"
    )
    summary = {"native_bf16": native, "settings": {k: str(v) for k, v in vars(options).items()}}
    write_results(Path(options.out), "matmul_precision", rows, **summary)
    return {"rows": rows, **summary}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--size", type=int, default=1024, help="side of the square matmul")
    parser.add_argument(
        "--tokens", type=int, default=480, help="rows of the MiniLM layer (batch x tokens)"
    )
    parser.add_argument(
        "--seconds",
        type=float,
        default=1.0,
        help="time per precision and workload (at least "
        "4 passes: where bf16 is emulated a 1024x1024 pass can take 10 s)",
    )
    parser.add_argument("--quick", action="store_true", help="small shapes: a smoke run")
    parser.add_argument("--out", default="results/matmul_precision.json")
    options = parser.parse_args(argv)
    if options.quick:
        options.size, options.tokens, options.seconds = 128, 16, 0.05
    return options


if __name__ == "__main__":
    main()
