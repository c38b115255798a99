"""``kgmm graph stats|link|embed``."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from kgmm.graph import KnowledgeGraph


def register(commands: argparse._SubParsersAction) -> None:
    graph = commands.add_parser("graph", help="inspect, link against and embed a knowledge graph")
    actions = graph.add_subparsers(dest="graph_command", required=True, metavar="ACTION")

    stats = actions.add_parser("stats", help="print counts of a graph file as JSON")
    _add_graph_arguments(stats)
    stats.set_defaults(run=run_stats)

    link = actions.add_parser("link", help="link entity mentions in a text to the graph")
    _add_graph_arguments(link)
    link.add_argument("text", help="the text to link")
    link.add_argument("--dense", action="store_true", help="also link fuzzy mentions by embedding")
    link.set_defaults(run=run_link)

    embed = actions.add_parser("embed", help="train KG embeddings and save them as safetensors")
    _add_graph_arguments(embed)
    embed.add_argument(
        "--model", default="rotate", choices=["transe", "distmult", "complex", "rotate"]
    )
    embed.add_argument("--dim", type=int, default=128, help="embedding dimension")
    embed.add_argument("--epochs", type=int, default=100)
    embed.add_argument("--seed", type=int, default=0)
    embed.add_argument("--valid", help="validation triples (same format), for model selection")
    embed.add_argument("--test", help="test triples: filtered MRR/Hits@K are reported")
    embed.add_argument("--out", required=True, help="output folder")
    embed.set_defaults(run=run_embed)


def _add_graph_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("file", help="triples file (.tsv .csv .jsonl .graphml .gml .nt)")
    parser.add_argument("--format", help="file format when the suffix does not say it")
    parser.add_argument(
        "--entities", help="entities file (default: <stem>.entities.tsv beside FILE)"
    )


def _load(args: argparse.Namespace) -> KnowledgeGraph:
    return KnowledgeGraph.load(args.file, format=args.format, entities=args.entities, progress=True)


def run_stats(args: argparse.Namespace) -> int:
    print(json.dumps(_load(args).stats(), indent=2, ensure_ascii=False))
    return 0


def run_link(args: argparse.Namespace) -> int:
    from kgmm.graph.linker import EntityLinker

    kg = _load(args)
    for mention in EntityLinker(kg, dense=args.dense).link(args.text):
        entity = kg.entity(mention.entity_id)
        print(
            f"{mention.start}\t{mention.end}\t{args.text[mention.start : mention.end]}\t"
            f"{entity.key}\t{entity.type}\t{mention.score:.3f}"
        )
    return 0


def run_embed(args: argparse.Namespace) -> int:
    from kgmm.graph.kge import train_kg_embeddings

    others = [p for p in (args.valid, args.test) if p]
    if others:
        kg, splits = KnowledgeGraph.load_splits(args.file, *others, format=args.format)
    else:
        kg, splits = _load(args), []
    valid = splits[0] if args.valid else None
    test = splits[-1] if args.test else None
    embeddings = train_kg_embeddings(
        kg, model=args.model, dim=args.dim, epochs=args.epochs, seed=args.seed, valid=valid
    )
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    embeddings.save(out / "embeddings.safetensors")
    report = {"model": args.model, "dim": args.dim, "epochs": args.epochs, "seed": args.seed}
    if test is not None:
        report["test"] = embeddings.evaluate(test, filtered=True, also_known=valid)
    (out / "metrics.json").write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))
    return 0
