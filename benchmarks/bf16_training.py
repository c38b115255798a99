"""Training throughput of a MiniLM text classifier: fp32 against bf16 autocast.

Trains the packaged all-MiniLM-L6-v2 checkpoint (real weights) with a classification head
through ``kgmm.Trainer`` on synthetic sentences of 12-40 words (about 15-55 word pieces),
batch 32, and reports training samples per second (collation, forward, backward and
optimizer step; the first ``--warmup`` steps are not timed). Runs alternate fp32 and bf16
so that load on a shared machine hits both alike; the table shows medians. On a machine
whose cores are busy with other work, ``--threads 1`` avoids the stalls of oversubscribed
intra-op threads, which otherwise swamp the difference being measured.

    python benchmarks/bf16_training.py --out results/bf16_training.json
    python benchmarks/bf16_training.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import tempfile
import time
from pathlib import Path

import torch

from kgmm import FusedConfig, FusedModel
from kgmm.metrics import format_table
from kgmm.training import Trainer, TrainerCallback, TrainingArguments

WORDS = (
    "my order has not arrived yet and the tracking page shows no update since last week "
    "i was charged twice for the same subscription please refund the extra payment "
    "how do i change the delivery address before the parcel ships the app keeps crashing "
    "when i open my account settings can you help me reset my password i never got the "
    "confirmation email the item was damaged in transit and i would like a replacement"
).split()
LABELS = [f"intent_{i}" for i in range(10)]


def sentences(count: int, seed: int) -> list[dict]:
    rng = random.Random(seed)
    return [
        {
            "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(12, 40))),
            "label": rng.choice(LABELS),
        }
        for _ in range(count)
    ]


class StepClock(TrainerCallback):
    """Time at the end of every optimizer step."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_step_end(self, trainer, step, logs):
        self.times.append(time.perf_counter())


def run(bf16: bool, steps: int, warmup: int, batch_size: int, samples: list[dict]) -> dict:
    config = FusedConfig(
        text={"max_length": 128},
        heads={"intent": {"type": "classification", "labels": LABELS}},
    )
    model = FusedModel(config)
    clock = StepClock()
    with tempfile.TemporaryDirectory() as output_dir:
        args = TrainingArguments(
            output_dir=output_dir,
            max_steps=warmup + steps,
            batch_size=batch_size,
            learning_rate=5e-5,
            logging_steps=warmup + steps,
            bf16=bf16,
            device="cpu",
            progress_bar=False,
        )
        result = Trainer(model, {"intent": samples}, args=args, callbacks=[clock]).train()
    seconds = clock.times[-1] - clock.times[warmup - 1]
    return {
        "precision": "bf16" if bf16 else "fp32",
        "samples_per_s": steps * batch_size / seconds,
        "seconds_per_step": seconds / steps,
        "final_loss": result.training_loss,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20, help="timed steps per run")
    parser.add_argument("--warmup", type=int, default=3, help="untimed steps per run")
    parser.add_argument("--repeats", type=int, default=3, help="runs per precision")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="results/bf16_training.json")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's)")
    parser.add_argument("--quick", action="store_true", help="5 steps, 1 repeat")
    options = parser.parse_args(argv)
    if options.threads:
        torch.set_num_threads(options.threads)
    if options.quick:
        options.steps, options.repeats = 5, 1
    samples = sentences(options.batch_size * (options.steps + options.warmup), seed=0)
    runs = []
    for repeat in range(options.repeats):
        for bf16 in (False, True):
            runs.append(run(bf16, options.steps, options.warmup, options.batch_size, samples))
            print(f"repeat {repeat}: {runs[-1]}", flush=True)
    rows = []
    for precision in ("fp32", "bf16"):
        mine = [r for r in runs if r["precision"] == precision]
        rows.append(
            {
                "precision": precision,
                "samples/s (median)": statistics.median(r["samples_per_s"] for r in mine),
                "min": min(r["samples_per_s"] for r in mine),
                "max": max(r["samples_per_s"] for r in mine),
                "loss": statistics.median(r["final_loss"] for r in mine),
            }
        )
    speedup = rows[1]["samples/s (median)"] / rows[0]["samples/s (median)"]
    print(format_table(rows, list(rows[0]), float_format=".2f"))
    print(f"bf16 speed-up: {speedup:.2f}x")
    report = {
        "model": "all-MiniLM-L6-v2 + classification head (10 labels)",
        "batch_size": options.batch_size,
        "timed_steps": options.steps,
        "warmup_steps": options.warmup,
        "repeats": options.repeats,
        "torch_threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "torch": torch.__version__,
        "summary": rows,
        "bf16_speedup": speedup,
        "runs": runs,
    }
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
