"""Link prediction on UMLS and Nations: each KG embedding model with its default settings.

    python benchmarks/kg_embeddings.py --data-dir ../shared/datasets/kg_umls_nations \\
        [--datasets umls nations] [--models transe distmult complex rotate] [--quick] \\
        [--threads 1] [--out results/kg_embeddings.json]

Trains on train, keeps the epoch with the best filtered valid MRR (filter: train + valid),
and reports filtered test MRR / Hits@k (filter: train + valid + test) beside the published
numbers (see PROVENANCE.md in the data folder). ``--quick`` runs two epochs as a smoke test.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

from kgmm.graph.kge import DEFAULTS, train_kg_embeddings
from kgmm.graph.knowledge_graph import KnowledgeGraph

DATASETS = ("umls", "nations")
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


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    data_dir = Path(args.data_dir)
    missing = [d for d in args.datasets if not (data_dir / d / "train.txt").is_file()]
    if missing:
        print(
            f"skipping: no {', '.join(missing)} data under {data_dir} "
            "(expected <data-dir>/<dataset>/{train,valid,test}.txt)"
        )
        return 0
    if args.threads:
        torch.set_num_threads(args.threads)
    results = []
    print(HEADER)
    for dataset in args.datasets:
        files = [data_dir / dataset / f"{split}.txt" for split in ("train", "valid", "test")]
        kg, (valid, test) = KnowledgeGraph.load_splits(*files, format="tsv")
        for model in args.models:
            results.append(run_one(kg, valid, test, dataset, model, args))
            print_row(results[-1])
    report = {
        "seed": args.seed,
        "quick": args.quick,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "results": results,
    }
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    return 0


def run_one(kg, valid, test, dataset: str, model: str, args: argparse.Namespace) -> dict:
    options = {"epochs": 2, "eval_every": 1} if args.quick else {}
    start = time.perf_counter()
    emb = train_kg_embeddings(
        kg, model, seed=args.seed, valid=valid, progress=args.progress, **options
    )
    seconds = time.perf_counter() - start
    evaluated = [h for h in emb.history if "valid_mrr" in h]
    best = max(evaluated, key=lambda h: h["valid_mrr"])
    label, *numbers = PUBLISHED[dataset][model]
    return {
        "dataset": dataset,
        "model": model,
        "test": emb.evaluate(test, also_known=valid),
        "valid_mrr": best["valid_mrr"],
        "best_epoch": best["epoch"],
        "seconds": round(seconds, 2),
        "config": emb.config,
        "published": {"source": label, **dict(zip(METRICS, numbers))},
    }


HEADER = (
    f"{'dataset':8} {'model':9} {'MRR':>6} {'H@1':>6} {'H@3':>6} {'H@10':>6} {'sec':>7}"
    f"  | published: {'MRR':>6} {'H@1':>6} {'H@3':>6} {'H@10':>6}  source"
)


def print_row(result: dict) -> None:
    ours = " ".join(f"{result['test'][m]:6.4f}" for m in METRICS)
    published = result["published"]
    theirs = " ".join("     —" if published[m] is None else f"{published[m]:6.4f}" for m in METRICS)
    print(
        f"{result['dataset']:8} {result['model']:9} {ours} {result['seconds']:7.1f}"
        f"  |            {theirs}  {published['source']}",
        flush=True,
    )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", default="../shared/datasets/kg_umls_nations")
    parser.add_argument("--datasets", nargs="+", choices=DATASETS, default=list(DATASETS))
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--quick", action="store_true", help="two epochs per model (smoke test)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch CPU threads (0: torch's default); on small graphs one thread is fastest",
    )
    parser.add_argument("--progress", action="store_true", help="show a progress bar per run")
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    return parser.parse_args(argv)


if __name__ == "__main__":
    sys.exit(main())
