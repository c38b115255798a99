"""DP-SGD (opacus) on BANKING77, 10 per intent: ε at δ=1e-5 and accuracy at two noise levels.

The model is the shared BANKING77 model (``banking77_setup``) with LoRA on the MiniLM text
encoder; the fusion module, the head and the LoRA matrices train, the encoder's own weights
are frozen (per-sample gradients of the whole encoder would need ~3 GB per batch of 32).
The 10-shot setting (770 utterances, 10 epochs, 250 steps of batch 32) keeps each run to a few
CPU minutes; with so few records the sampling rate (32/770) is high, so ε is that of a small
dataset, the hard case for DP. Each configuration runs in its own single-threaded process;
the non-private row is the same model and schedule without DP.

    python benchmarks/privacy.py [--quick] [--data-dir DIR] [--out results/privacy.json]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import banking77_setup as setup  # noqa: E402

import kgmm  # noqa: E402
from kgmm.metrics import format_table  # noqa: E402
from kgmm.training import DifferentialPrivacy  # noqa: E402

EPOCHS, QUICK_EPOCHS = 10, 1
DELTA = 1e-5
MAX_GRAD_NORM = 1.0
NOISE_LEVELS = (0.8, 1.5)  # ε about 8 and 2.3 for 250 steps at sample rate 32/770
LEARNING_RATE = 1e-3  # LoRA's usual rate; the head and gates keep the shared faster rates
RATES = {"*cross_attn_gate*": 1e-2, "heads.*": 1e-3, "fusion.*": 1e-3}


def run_level(noise_multiplier: float | None, data_dir: str, quick: bool, epochs: float) -> dict:
    """Train with DP at ``noise_multiplier`` (None: without DP) and measure (own process)."""
    train, test, labels = setup.load_setting(Path(data_dir), quick=quick)
    model = setup.build_model(labels)
    model.add_adapter(
        kgmm.AdapterConfig(method="lora", targets=("text",), trainable=("heads.*", "fusion.*"))
    )
    privacy = (
        None
        if noise_multiplier is None
        else DifferentialPrivacy(noise_multiplier, MAX_GRAD_NORM, delta=DELTA, seed=0)
    )
    with tempfile.TemporaryDirectory() as folder:
        args = setup.training_arguments(
            Path(folder), epochs, learning_rate=LEARNING_RATE, learning_rates=RATES
        )
        trainer = kgmm.Trainer(
            model, {setup.TASK: train}, args=args, callbacks=[privacy] if privacy else []
        )
        started = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - started
    return {
        "noise_multiplier": noise_multiplier,
        "max_grad_norm": MAX_GRAD_NORM if privacy else None,
        "epsilon": privacy.epsilon() if privacy else None,
        "delta": DELTA if privacy else None,
        "sample_rate": privacy.sample_rate if privacy else None,
        "steps": result.step,
        "trainable_parameters": setup.trainable_parameters(model),
        "train_seconds": train_seconds,
        "train_samples_per_second": epochs * len(train) / train_seconds,
        "test_accuracy": setup.test_accuracy(model, test),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 intents, 1 epoch")
    parser.add_argument("--data-dir", default=str(setup.DEFAULT_DATA))
    parser.add_argument("--out", default=str(setup.REPO / "results" / "privacy.json"))
    options = parser.parse_args(argv)
    epochs = QUICK_EPOCHS if options.quick else EPOCHS
    rows = []
    for noise in (None, *NOISE_LEVELS):
        row = setup.run_isolated(run_level, noise, options.data_dir, options.quick, epochs)
        rows.append(row)
        print(f"noise {noise}: ε={row['epsilon']} acc={row['test_accuracy']:.4f}", flush=True)
    table = [
        {
            "noise": r["noise_multiplier"] if r["noise_multiplier"] is not None else "none",
            "ε (δ=1e-5)": r["epsilon"] if r["epsilon"] is not None else "∞",
            "test acc": r["test_accuracy"],
            "train samples/s": round(r["train_samples_per_second"], 1),
            "peak RSS MiB": round(r["peak_rss_mib"]),
        }
        for r in rows
    ]
    print(format_table(table, list(table[0])))
    setting = "quick" if options.quick else "10-shot"
    setup.write_results(Path(options.out), "privacy", rows, setting=setting, epochs=epochs)
    return {"setting": setting, "epochs": epochs, "rows": rows}


if __name__ == "__main__":
    main()
