"""kgmm's RotatE and ComplEx against PyKEEN's, on the same UMLS split, in one run.

Both libraries train on ``umls/train.txt`` for the same epochs with the same width of
entity vectors (kgmm's ``dim`` real numbers = PyKEEN's ``embedding_dim = dim / 2`` complex
coordinates), batch size, optimizer, learning rate and loss family (kgmm's defaults of
``kgmm.graph.kge.DEFAULTS``, which PyKEEN expresses as):

* RotatE: negative sampling, self-adversarial loss (margin 6, temperature 1), 32 negatives
  per triple (kgmm: 16 corrupted heads + 16 tails; PyKEEN: 32 corruptions of either side),
  Adam 5e-3, batch 256, 150 epochs;
* ComplEx: 1-vs-all softmax cross-entropy with reciprocal relations (PyKEEN: LCWA with
  inverse triples), N3 regularisation 3e-3 (PyKEEN: ``lp`` with p=3), Adagrad 0.1,
  batch 256, 100 epochs. PyKEEN keeps its own initialisation.

Neither selects an epoch on valid: the final model is scored. Reported: training triples
per second (training only, evaluation excluded) and filtered test MRR / Hits@10 (both
sides, realistic ranks, filter train + valid + test). The libraries alternate per model.

    pip install -e .[bench]        # PyKEEN, the benchmark's own optional extra
    python benchmarks/kg_embeddings_pykeen.py [--models rotate complex] [--quick]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from pathlib import Path
from typing import Any

import torch

from kgmm.errors import DataError
from kgmm.graph.kge import DEFAULTS, train_kg_embeddings
from kgmm.graph.knowledge_graph import KnowledgeGraph
from kgmm.metrics import format_table
from kgmm.training import run_environment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "kg_umls_nations"
MODELS = ("rotate", "complex")


def pykeen_settings(model: str, epochs: int) -> dict[str, Any]:
    """``pykeen.pipeline`` arguments matching kgmm's defaults for ``model``."""
    config = DEFAULTS[model]
    training = {"num_epochs": epochs, "batch_size": config.batch_size, "use_tqdm": False}
    if model == "rotate":
        return {
            "model": "RotatE",
            "model_kwargs": {"embedding_dim": config.dim // 2},
            "training_loop": "sLCWA",
            "negative_sampler_kwargs": {"num_negs_per_pos": 2 * config.negatives},
            "loss": "NSSALoss",
            "loss_kwargs": {
                "margin": config.gamma,
                "adversarial_temperature": config.adversarial_temperature,
            },
            "optimizer": "Adam",
            "optimizer_kwargs": {"lr": config.lr},
            "training_kwargs": training,
        }
    return {
        "model": "ComplEx",
        "model_kwargs": {
            "embedding_dim": config.dim // 2,
            "regularizer": "lp",
            "regularizer_kwargs": {"p": 3.0, "weight": config.reg_weight},
        },
        "training_loop": "LCWA",
        "loss": "CrossEntropyLoss",
        "optimizer": "Adagrad",
        "optimizer_kwargs": {"lr": config.lr},
        "training_kwargs": training,
    }


def run_pykeen(folder: Path, model: str, epochs: int, seed: int, device: str) -> dict:
    from pykeen.pipeline import pipeline
    from pykeen.triples import TriplesFactory

    settings = pykeen_settings(model, epochs)
    inverse = settings["training_loop"] == "LCWA"
    train = TriplesFactory.from_path(folder / "train.txt", create_inverse_triples=inverse)
    valid, test = (
        TriplesFactory.from_path(
            folder / f"{split}.txt",
            entity_to_id=train.entity_to_id,
            relation_to_id=train.relation_to_id,
        )
        for split in ("valid", "test")
    )
    result = pipeline(
        training=train,
        validation=valid,
        testing=test,
        random_seed=seed,
        device=device,
        evaluation_kwargs={"batch_size": 256, "use_tqdm": False},
        **settings,
    )
    metrics = result.metric_results
    return {
        "library": "pykeen",
        "model": model,
        "train_seconds": result.train_seconds,
        "triples_per_s": train.num_triples * epochs / result.train_seconds,
        "mrr": float(metrics.get_metric("both.realistic.inverse_harmonic_mean_rank")),
        "hits@10": float(metrics.get_metric("both.realistic.hits_at_10")),
    }


def run_kgmm(folder: Path, model: str, epochs: int, seed: int, device: str) -> dict:
    files = [folder / f"{split}.txt" for split in ("train", "valid", "test")]
    kg, (valid, test) = KnowledgeGraph.load_splits(*files, format="tsv")
    start = time.perf_counter()
    emb = train_kg_embeddings(kg, model, epochs=epochs, seed=seed, device=device, progress=False)
    seconds = time.perf_counter() - start
    metrics = emb.evaluate(test, also_known=valid)
    return {
        "library": "kgmm",
        "model": model,
        "train_seconds": seconds,
        "triples_per_s": kg.num_triples * epochs / seconds,
        "mrr": metrics["mrr"],
        "hits@10": metrics["hits@10"],
    }


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    folder = Path(options.data_dir) / "umls"
    if not (folder / "train.txt").is_file():
        raise DataError(f"{folder / 'train.txt'} not found; pass --data-dir (kg_umls_nations)")
    try:
        import pykeen  # noqa: F401
    except ImportError:
        raise SystemExit("PyKEEN is not installed: pip install -e '.[bench]'") from None
    if options.threads:
        torch.set_num_threads(options.threads)
    logging.getLogger("pykeen").setLevel(logging.ERROR)
    rows = []
    for model in options.models:
        epochs = 1 if options.quick else options.epochs or DEFAULTS[model].epochs
        for run in (run_kgmm, run_pykeen):
            rows.append(
                {**run(folder, model, epochs, options.seed, options.device), "epochs": epochs}
            )
            print(f"{rows[-1]}", flush=True)
        kgmm_row, pykeen_row = rows[-2], rows[-1]
        kgmm_row["speed_vs_pykeen"] = kgmm_row["triples_per_s"] / pykeen_row["triples_per_s"]
        kgmm_row["mrr_minus_pykeen"] = kgmm_row["mrr"] - pykeen_row["mrr"]
    columns = ["model", "library", "epochs", "train_seconds", "triples_per_s", "mrr", "hits@10"]
    print(format_table(rows, columns + ["speed_vs_pykeen", "mrr_minus_pykeen"], ".3f"))
    report = {
        "benchmark": "kg_embeddings_pykeen",
        "dataset": "umls",
        "rows": rows,
        "settings": {k: str(v) if isinstance(v, Path) else v for k, v in vars(options).items()},
        **run_environment(),
    }
    out = Path(options.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"results written to {out}")
    return report


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--epochs", type=int, help="default: kgmm's per-model default")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="1 epoch per model")
    parser.add_argument("--out", default="results/kg_embeddings_pykeen.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
