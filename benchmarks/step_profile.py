"""Where a training step of ``train_speed.py``'s contenders spends its time.

Trains one contender (``peer2_hf_trainer``, ``kgmm_text``, ``kgmm_kg`` or a lever of
``train_speed.py``, e.g. ``torch-dropout``) on BANKING77 as ``train_speed.py`` does and runs
``torch.profiler`` over ``--steps`` optimizer steps after ``--warmup-steps``. Prints the ops
with the most self time per step (their share of all ops' self time, and calls per step) and
the step's wall time, and writes JSON. The profiler itself slows the step; compare shares,
not absolute times.

    python benchmarks/step_profile.py --threads 1 --contender kgmm_text
    python benchmarks/step_profile.py --threads 2 --contender torch-dropout
    python benchmarks/step_profile.py --threads 2 --contender peer2_hf_trainer
    python benchmarks/step_profile.py --quick                        # CI smoke run
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import torch
import transformers
from banking77_setup import DEFAULT_DATA, write_results
from torch.profiler import ProfilerActivity, profile
from train_speed import (
    BATCH,
    KGMM,
    LEVERS,
    Peer2Variant,
    StepClock,
    contender_variant,
    cycled,
    load_data,
    trainer_run,
)

from kgmm.metrics import format_table
from kgmm.training import TrainerCallback


class StepProfiler(StepClock):
    """A :class:`StepClock` that profiles the optimizer steps after the first ``warmup``
    until ``steps`` more ended."""

    def __init__(self, warmup: int, steps: int) -> None:
        super().__init__(torch.device("cpu"))
        self.warmup, self.steps = warmup, steps
        self.profiler = profile(activities=[ProfilerActivity.CPU])

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        super().on_step_end()
        if len(self.times) == self.warmup:
            self.profiler.start()
        elif len(self.times) == self.warmup + self.steps:
            self.profiler.stop()

    def wall_ms_per_step(self) -> float:
        """Wall time per profiled step."""
        ended = self.times[self.warmup + self.steps - 1]
        return (ended - self.times[self.warmup - 1]) / self.steps * 1e3


class KgmmStepProfiler(StepProfiler, TrainerCallback):
    """A :class:`StepProfiler` for ``kgmm.Trainer``."""


class HFStepProfiler(StepProfiler, transformers.TrainerCallback):
    """A :class:`StepProfiler` for ``transformers.Trainer`` (peer 2)."""


def op_rows(profiler: Any, steps: int) -> list[dict]:
    """Every op's self time and calls per step, and its share of all ops' self time."""
    events = profiler.key_averages()
    total = sum(event.self_cpu_time_total for event in events)
    rows = [
        {
            "op": event.key,
            "ms_per_step": event.self_cpu_time_total / steps / 1e3,
            "share": event.self_cpu_time_total / total,
            "calls_per_step": event.count / steps,
        }
        for event in events
    ]
    return sorted(rows, key=lambda row: -row["ms_per_step"])


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    transformers.logging.set_verbosity_error()
    if options.threads:
        torch.set_num_threads(options.threads)
    variant = contender_variant(options.contender)
    train, _, labels = load_data(options.data_dir, options.train_samples, 0, options.quick, seed=0)
    peer = isinstance(variant, Peer2Variant)
    profiler = (HFStepProfiler if peer else KgmmStepProfiler)(options.warmup_steps, options.steps)
    steps = options.warmup_steps + options.steps
    samples = cycled(train, steps * BATCH)
    cpu = torch.device("cpu")
    trainer_run(variant)(samples, None, labels, cpu, 1, 1, steps, variant, callbacks=[profiler])
    rows = op_rows(profiler.profiler, options.steps)
    ops_ms = sum(row["ms_per_step"] for row in rows)
    wall_ms = profiler.wall_ms_per_step()
    print(format_table(rows[: options.top], ["op", "ms_per_step", "share", "calls_per_step"]))
    print(
        f"{options.contender}: {wall_ms:.0f} ms per step (wall), {ops_ms:.0f} ms of op self "
        f"time, {torch.get_num_threads()} threads"
    )
    summary = {"contender": options.contender, "wall_ms_per_step": wall_ms, "ops_ms": ops_ms}
    summary["settings"] = {key: str(value) for key, value in vars(options).items()}
    write_results(Path(options.out), "step_profile", rows, **summary)
    return {"rows": rows, **summary}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument(
        "--contender", default="kgmm_text", choices=["peer2_hf_trainer", *KGMM, *LEVERS]
    )
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--train-samples", type=int, default=1920)
    parser.add_argument("--warmup-steps", type=int, default=8)
    parser.add_argument("--steps", type=int, default=20, help="profiled optimizer steps")
    parser.add_argument("--top", type=int, default=15, help="ops printed")
    parser.add_argument("--quick", action="store_true", help="5 intents, 2+2 steps")
    parser.add_argument("--out", default="results/step_profile.json")
    options = parser.parse_args(argv)
    if options.quick:
        options.warmup_steps, options.steps = 2, 2
    return options


if __name__ == "__main__":
    main()
