"""Full fine-tuning vs LoRA, AdaLoRA, IA3 and prefix tuning on BANKING77 (10 per intent).

(Named ``peft_methods.py``, not ``peft.py``: a script's folder comes first on ``sys.path``, so
``peft.py`` would shadow the ``peft`` package.)

Each configuration trains the shared BANKING77 model (``banking77_setup``) for the same
epochs in its own single-threaded process and reports trainable parameters, the process's
peak resident memory, training samples/s and accuracy on the official test set. Adapters
start from the same MiniLM checkpoint with the fusion module and head freshly initialised;
the head and the knowledge gates train with every adapter, everything else is frozen.

    python benchmarks/peft_methods.py [--quick] [--data-dir DIR] [--out results/peft.json]
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

EPOCHS, QUICK_EPOCHS = 10, 1
# peft practice: adapters want far larger rates than full fine-tuning (LoRA paper: 1e-3 -
# 5e-4 on RoBERTa; prefix/prompt tuning ~1e-2); the gates and head keep the shared rates.
ADAPTERS = {
    "full": (None, 1e-4),
    "lora": (kgmm.AdapterConfig(method="lora", r=8, alpha=16), 1e-3),
    "adalora": (kgmm.AdapterConfig(method="adalora", r=8, init_r=12, alpha=16), 1e-3),
    "ia3": (kgmm.AdapterConfig(method="ia3"), 5e-3),
    "prefix": (kgmm.AdapterConfig(method="prefix", num_virtual_tokens=20), 1e-2),
}
ADAPTER_RATES = {"*cross_attn_gate*": 1e-2, "heads.*": 1e-3}
TRAINABLE = ("heads.*", "*cross_attn_gate*")


def run_method(method: str, data_dir: str, quick: bool, epochs: float) -> dict:
    """Train one configuration and measure it (runs in its own process)."""
    train, test, labels = setup.load_setting(Path(data_dir), quick=quick)
    model = setup.build_model(labels)
    adapter, learning_rate = ADAPTERS[method]
    overrides = {}
    if adapter is not None:
        adapter.trainable = TRAINABLE
        model.add_adapter(adapter)
        overrides = {"learning_rate": learning_rate, "learning_rates": ADAPTER_RATES}
    with tempfile.TemporaryDirectory() as folder:
        args = setup.training_arguments(Path(folder), epochs, **overrides)
        trainer = kgmm.Trainer(model, {setup.TASK: train}, args=args)
        started = time.perf_counter()
        result = trainer.train()
        train_seconds = time.perf_counter() - started
    return {
        "method": method,
        "trainable_parameters": setup.trainable_parameters(model),
        "learning_rate": learning_rate,
        "steps": result.step,
        "train_seconds": train_seconds,
        "train_samples_per_second": epochs * len(train) / train_seconds,
        "test_accuracy": setup.test_accuracy(model, test),
    }


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="5 intents, 1 epoch (about a minute)")
    parser.add_argument("--data-dir", default=str(setup.DEFAULT_DATA))
    parser.add_argument("--out", default=str(setup.REPO / "results" / "peft.json"))
    parser.add_argument("--methods", default=",".join(ADAPTERS))
    options = parser.parse_args(argv)
    epochs = QUICK_EPOCHS if options.quick else EPOCHS
    rows = []
    for method in options.methods.split(","):
        row = setup.run_isolated(run_method, method, options.data_dir, options.quick, epochs)
        rows.append(row)
        print(f"{method}: {row['test_accuracy']:.4f} in {row['wall_seconds']:.0f} s", flush=True)
    table = [
        {
            "method": r["method"],
            "trainable": r["trainable_parameters"],
            "peak RSS MiB": round(r["peak_rss_mib"]),
            "train samples/s": round(r["train_samples_per_second"], 1),
            "test acc": r["test_accuracy"],
        }
        for r in rows
    ]
    print(format_table(table, list(table[0])))
    summary = {"setting": "quick" if options.quick else "10-shot", "epochs": epochs, "rows": rows}
    setup.write_results(Path(options.out), "peft", rows, setting=summary["setting"], epochs=epochs)
    return summary


if __name__ == "__main__":
    main()
