"""DP-SGD (opacus) on BANKING77: ε at δ=1e-5 and test accuracy at two noise levels.

The model is the shared BANKING77 model (``banking77_setup``). By default LoRA adapts the
MiniLM text encoder and the fusion module, the head and the LoRA matrices train under DP
(per-sample gradients of the whole encoder would need ~3 GB per batch of 32); with
``--frozen-encoder`` the encoder is frozen without an adapter and only the fusion module and
the head train, which is several times faster (no backward pass through the encoder).
``--per-label N`` trains on N utterances per intent (0: the whole train.csv, 10,003; the
default 10 is the hard case for DP: with 770 records the sampling rate 32/770 is high).
Each configuration runs in its own single-threaded process; the non-private row is the
same model and schedule without DP.

    python benchmarks/privacy.py --per-label 0 --frozen-encoder --epochs 2
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


def run_level(noise_multiplier: float | None, options: argparse.Namespace, epochs: float) -> dict:
    """Train with DP at ``noise_multiplier`` (None: without DP) and measure (own process)."""
    train, test, labels = setup.load_setting(
        Path(options.data_dir), options.per_label, quick=options.quick
    )
    if options.frozen_encoder:
        model = setup.build_model(labels, text={"freeze": True})
    else:
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
    parser.add_argument("--per-label", type=int, default=10, help="0: the whole train.csv")
    parser.add_argument("--epochs", type=float, default=None, help=f"default {EPOCHS}")
    parser.add_argument(
        "--frozen-encoder", action="store_true", help="no adapter: fusion and head train"
    )
    options = parser.parse_args(argv)
    epochs = QUICK_EPOCHS if options.quick else options.epochs or EPOCHS
    rows = []
    for noise in (None, *NOISE_LEVELS):
        row = setup.run_isolated(run_level, noise, options, epochs)
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
    setting = (
        "quick"
        if options.quick
        else f"{options.per_label}-shot"
        if options.per_label
        else "full train.csv"
    )
    trained = "fusion + head (encoder frozen)" if options.frozen_encoder else "LoRA + fusion + head"
    setup.write_results(
        Path(options.out), "privacy", rows, setting=setting, epochs=epochs, trained=trained
    )
    return {"setting": setting, "epochs": epochs, "rows": rows}


if __name__ == "__main__":
    main()
