"""Inference speed and accuracy of a text+KG BANKING77 model: fp32, bf16 and int8.

The model is a kgmm_kg model of ``train_speed.py`` (MiniLM + one fusion layer over
``graphs/banking.tsv``, 3 hops, at most 64 entities): loaded from ``--checkpoint`` (e.g. the
folder ``train_speed.py --save-model`` wrote) or trained here for ``--train-steps`` steps.
Variants of the same weights:

* ``fp32``: as trained;
* ``bf16 autocast``: fp32 weights under ``torch.autocast(dtype=torch.bfloat16)``;
* ``bf16 weights``: a copy cast to bfloat16 (no autocast);
* ``int8 dynamic``: ``kgmm.model.int8_dynamic``, i.e. ``torch.ao`` ``quantize_dynamic`` of
  every ``nn.Linear`` (int8 weights, activations quantised per batch).

Batch-64 batches are cut from the test utterances sorted longest first, as
``FusedModel.predict`` and ``Trainer.evaluate`` cut them; the row ``fp32 input order``
times fp32 on batches cut in the test set's order (each padded to its longest utterance),
which is what the sorting gains. Batches are collated once up front (tokenising, entity
linking and expansion: the per-batch collation cost is reported separately, it is the
same for every variant); the clocks measure the model's forward pass. Batch-1 latency
p50/p99 over ``--latency-samples`` test utterances; batch-64 throughput over the test set;
accuracy on the test set. Variants alternate within every round (``--repeats``) so machine
load hits all alike.

    python benchmarks/inference.py --checkpoint /tmp/kgmm_kg        # after train_speed.py
    python benchmarks/inference.py --train-steps 313                # one epoch first
    python benchmarks/inference.py --quick
"""

from __future__ import annotations

import argparse
import copy
import statistics
import tempfile
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

import torch
import transformers
from banking77_setup import DEFAULT_DATA, TASK, training_arguments, write_results
from speed_measures import percentile, synchronize
from train_speed import kgmm_model, load_data

import kgmm
from kgmm.data import longest_first
from kgmm.data.batch import move_to
from kgmm.metrics import format_table
from kgmm.model import int8_dynamic

THROUGHPUT_BATCH = 64
INPUT_ORDER = "fp32 input order"
VARIANTS = ("fp32", "bf16 autocast", "bf16 weights", "int8 dynamic", INPUT_ORDER)


def variants(
    model: kgmm.FusedModel, device: torch.device, names: list[str]
) -> dict[str, tuple[Any, bool]]:
    """name -> (model, bf16 autocast?) for each numeric variant of ``names`` that runs on
    ``device``."""
    builders: dict[str, Callable[[], tuple[Any, bool]]] = {
        "fp32": lambda: (model, False),
        "bf16 autocast": lambda: (model, True),
        "bf16 weights": lambda: (copy.deepcopy(model).to(torch.bfloat16), False),
        "int8 dynamic": lambda: (int8_dynamic(model), False),  # a quantised copy
    }
    if device.type != "cpu":  # quantized dynamic kernels are CPU-only
        del builders["int8 dynamic"]
    return {name: build() for name, build in builders.items() if name in names}


def forward(model: Any, bf16: bool, device: torch.device) -> Callable[[dict], torch.Tensor]:
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if bf16 else nullcontext()

    def run(batch: dict) -> torch.Tensor:
        with torch.inference_mode(), autocast:
            predictions = model(task=TASK, **batch).logits.argmax(-1)
        synchronize(device)
        return predictions

    return run


def collated(
    model: kgmm.FusedModel, samples: list[dict], size: int, device: torch.device
) -> tuple[list[dict], float]:
    """``samples`` in batches of ``size`` on ``device``, and the mean ms to collate one."""
    collate = model.collator(TASK, targets=False)
    batches, start = [], time.perf_counter()
    for index in range(0, len(samples), size):
        batches.append(collate(samples[index : index + size]))
    per_batch_ms = (time.perf_counter() - start) * 1e3 / len(batches)
    return [move_to(batch, device) for batch in batches], per_batch_ms


def trained_model(
    train: list[dict], labels: list[str], steps: int, device: torch.device
) -> kgmm.FusedModel:
    model = kgmm_model(labels, knowledge=True)
    with tempfile.TemporaryDirectory() as output_dir:
        args = training_arguments(
            Path(output_dir), 1.0, max_steps=steps, device=device.type, save_total_limit=None
        )
        kgmm.Trainer(model, {TASK: train}, args=args).train()
    return model


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if options.threads:
        torch.set_num_threads(options.threads)
    device = torch.device(options.device)
    train, test, labels = load_data(
        options.data_dir, None, options.test_samples, options.quick, seed=0
    )
    if options.checkpoint:
        model = kgmm.FusedModel.from_pretrained(options.checkpoint)
        source = str(options.checkpoint)
    else:
        model = trained_model(train, labels, options.train_steps, device)
        source = f"trained here for {options.train_steps} steps"
    model = model.to(device).eval()
    gold = torch.tensor([model.heads[TASK].labels.index(s["label"]) for s in test])
    order = longest_first(test)
    single, collate_1_ms = collated(model, test[: options.latency_samples], 1, device)
    batches, collate_64_ms = collated(model, [test[i] for i in order], THROUGHPUT_BATCH, device)
    runs = {
        name: (forward(m, bf16, device), batches, gold[order])
        for name, (m, bf16) in variants(model, device, options.variants).items()
    }
    if INPUT_ORDER in options.variants:
        unsorted, _ = collated(model, test, THROUGHPUT_BATCH, device)
        runs[INPUT_ORDER] = (runs["fp32"][0], unsorted, gold)  # latency: the same as fp32's
    for run, run_batches, _ in runs.values():  # warm-up: first calls allocate, pick kernels
        for batch in single[:3] + run_batches[:1]:
            run(batch)
    latencies = {name: [] for name in runs if name != INPUT_ORDER}
    speeds = {name: [] for name in runs}
    correct: dict[str, torch.Tensor] = {}
    for round_ in range(options.repeats):
        for name, (run, run_batches, run_gold) in runs.items():
            for batch in single if name in latencies else ():
                start = time.perf_counter()
                run(batch)
                latencies[name].append((time.perf_counter() - start) * 1e3)
            start = time.perf_counter()
            predicted = torch.cat([run(batch).cpu() for batch in run_batches])
            speeds[name].append(len(test) / (time.perf_counter() - start))
            correct[name] = predicted == run_gold
            print(f"round {round_ + 1}: {name:16} {speeds[name][-1]:8.1f} samples/s", flush=True)
    fp32_speed = statistics.median(speeds["fp32"])
    fp32_accuracy = float(correct["fp32"].float().mean())
    rows = []
    for name in runs:
        accuracy = float(correct[name].float().mean())
        speed = statistics.median(speeds[name])
        rows.append(
            {
                "variant": name,
                "p50_ms": percentile(latencies[name], 50) if name in latencies else None,
                "p99_ms": percentile(latencies[name], 99) if name in latencies else None,
                "batch64_samples_per_s": speed,
                "speedup_vs_fp32": speed / fp32_speed,
                "test_accuracy": accuracy,
                "accuracy_change_points": (accuracy - fp32_accuracy) * 100,
            }
        )
    print(format_table(rows, list(rows[0]), float_format=".3f"))
    print(
        f"collation (tokenise + link + expand, not in the times above): {collate_1_ms:.2f} ms "
        f"for 1 sample, {collate_64_ms:.1f} ms for {THROUGHPUT_BATCH}; "
        f"{torch.get_num_threads()} threads, {device}"
    )
    summary = {
        "model": source,
        "collate_ms": {"batch_1": collate_1_ms, f"batch_{THROUGHPUT_BATCH}": collate_64_ms},
        "test_samples": len(test),
        "latency_samples": len(single),
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
    }
    write_results(Path(options.out), "inference", rows, **summary)
    return {"rows": rows, **summary}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--checkpoint", type=Path, help="a FusedModel folder (save_pretrained)")
    parser.add_argument("--train-steps", type=int, default=313, help="without --checkpoint")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--test-samples", type=int, help="a seeded slice of the test set")
    parser.add_argument("--latency-samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--variants",
        nargs="+",
        choices=VARIANTS,
        default=list(VARIANTS),
        metavar="NAME",
        help=f"which rows to time (fp32 always): {', '.join(map(repr, VARIANTS))}",
    )
    parser.add_argument("--quick", action="store_true", help="5 intents, 2 training steps")
    parser.add_argument("--out", default="results/inference.json")
    options = parser.parse_args(argv)
    options.variants = ["fp32", *(name for name in options.variants if name != "fp32")]
    if options.quick:
        options.train_steps, options.latency_samples, options.repeats = 2, 5, 1
    return options


if __name__ == "__main__":
    main()
