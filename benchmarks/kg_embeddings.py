"""Link prediction on UMLS and Nations: each KG embedding model with its default settings.

    python benchmarks/kg_embeddings.py [--data-dir ../shared/datasets/kg_umls_nations] \\
        [--datasets umls nations] [--models transe distmult complex rotate] [--quick] \\
        [--threads 1] [--device cpu|cuda] [--out results/kg_embeddings.json]

Trains on train, keeps the epoch with the best filtered valid MRR (filter: train + valid),
and reports filtered test MRR / Hits@k (filter: train + valid + test) beside the published
numbers (see PROVENANCE.md in the data folder); prints a table and writes JSON. ``--quick``
runs two epochs as a smoke test.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch
from banking77_setup import write_results

from kgmm.errors import DataError
from kgmm.graph.kge import DEFAULTS, train_kg_embeddings
from kgmm.graph.knowledge_graph import KnowledgeGraph
from kgmm.metrics import format_table

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "kg_umls_nations"
DATASETS = ("umls", "nations")
SPLITS = ("train", "valid", "test")
MODELS = tuple(DEFAULTS)
METRICS = ("mrr", "hits@1", "hits@3", "hits@10")

# (label, MRR, Hits@1, Hits@3, Hits@10); None where the source gives no number.
NATIONS = "Pu et al. 2022"
PUBLISHED: dict[str, dict[str, tuple[str, float, float, float | None, float]]] = {
    "nations": {
        "transe": (f"TransE ({NATIONS})", 0.4813, 0.2189, 0.6667, 0.9801),
        "distmult": (f"DistMult ({NATIONS})", 0.7131, 0.5970, 0.7761, 0.9776),
        "complex": (f"ComplEx ({NATIONS})", 0.6677, 0.5274, 0.7413, 0.9776),
        "rotate": (f"RotatE ({NATIONS})", 0.7155, 0.5796, 0.7985, 1.0),
    },
    # No trustworthy per-model UMLS rows exist for these four models (PROVENANCE.md);
    # the best consistent published row is the reference for all of them.
    "umls": {
        model: ("best: MultiHop (Lin et al. 2018)", 0.940, 0.902, None, 0.992) for model in MODELS
    },
}


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    splits = {dataset: split_files(args.data_dir, dataset) for dataset in args.datasets}
    rows = []
    for dataset, files in splits.items():
        kg, (valid, test) = KnowledgeGraph.load_splits(*files, format="tsv")
        for model in args.models:
            rows.append(run_one(kg, valid, test, dataset, model, args))
            print(f"{dataset} {model}: test MRR {rows[-1]['mrr']:.4f}", flush=True)
    columns = ["dataset", "model", *METRICS, "best_epoch", "seconds", "published_mrr"]
    print(format_table(rows, columns, ".4f"))
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    write_results(Path(args.out), "kg_embeddings", rows, settings=settings)
    return {"rows": rows, "settings": settings}


def split_files(data_dir: Path, dataset: str) -> list[Path]:
    """``<data_dir>/<dataset>/{train,valid,test}.txt``; a DataError names what is missing."""
    files = [data_dir / dataset / f"{split}.txt" for split in SPLITS]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise DataError(
            f"no {dataset} split: {', '.join(missing)} not found; pass --data-dir (the folder "
            f"holding {'/'.join(DATASETS)}/{{train,valid,test}}.txt)"
        )
    return files


def run_one(kg, valid, test, dataset: str, model: str, args: argparse.Namespace) -> dict:
    options = {"epochs": 2, "eval_every": 1} if args.quick else {}
    start = time.perf_counter()
    emb = train_kg_embeddings(
        kg,
        model,
        seed=args.seed,
        valid=valid,
        device=args.device,
        progress=args.progress,
        **options,
    )
    seconds = time.perf_counter() - start
    evaluated = [h for h in emb.history if "valid_mrr" in h]
    best = max(evaluated, key=lambda h: h["valid_mrr"])
    source, *numbers = PUBLISHED[dataset][model]
    return {
        "dataset": dataset,
        "model": model,
        **emb.evaluate(test, also_known=valid),
        "valid_mrr": best["valid_mrr"],
        "best_epoch": best["epoch"],
        "seconds": seconds,
        "config": emb.config,
        **{f"published_{metric}": number for metric, number in zip(METRICS, numbers)},
        "published_source": source,
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="two epochs per model (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default); on small graphs one thread is fastest",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar per run")
    parser.add_argument("--out", default="results/kg_embeddings.json")
    return parser.parse_args(argv)


if __name__ == "__main__":
    main()
