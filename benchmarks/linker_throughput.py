"""Throughput of EntityLinker string matching on a large synthetic alias dictionary.

Builds a KnowledgeGraph whose entities carry ``--aliases`` multi-word synthetic aliases
(seeded), times building the linker, then links ``--megabytes`` of synthetic documents that
mix alias mentions (in varied case and punctuation) with filler words, and reports
characters per second and mentions found.

    python benchmarks/linker_throughput.py --out linker_throughput.json
    python benchmarks/linker_throughput.py --quick
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import time
from pathlib import Path

from kgmm.graph.knowledge_graph import KnowledgeGraph
from kgmm.graph.linker import EntityLinker

SYLLABLES = [
    "ka",
    "lo",
    "mi",
    "ran",
    "te",
    "vu",
    "zo",
    "pel",
    "dri",
    "nox",
    "sa",
    "qui",
    "bel",
    "tor",
    "fen",
    "gu",
    "hal",
    "ix",
    "jo",
    "mur",
    "ost",
    "pra",
    "sev",
    "tul",
    "vin",
    "wex",
]
FILLER = (
    "the patient was seen today and reported that symptoms started two days ago with "
    "some improvement after rest although the family noted changes in appetite sleep "
    "and mood so we discussed options follow up plans and further tests in clinic"
).split()
ALIASES_PER_ENTITY = 2


def synthetic_word(rng: random.Random) -> str:
    return "".join(rng.choice(SYLLABLES) for _ in range(rng.randint(2, 4)))


def synthetic_graph(num_aliases: int, rng: random.Random) -> KnowledgeGraph:
    """Entities with a 1-2 word name and ALIASES_PER_ENTITY aliases of 1-4 words each."""
    num_entities = num_aliases // ALIASES_PER_ENTITY
    records = []
    for index in range(num_entities):
        name = " ".join(synthetic_word(rng) for _ in range(rng.randint(1, 2)))
        aliases = [
            " ".join(synthetic_word(rng) for _ in range(rng.randint(1, 4)))
            for _ in range(ALIASES_PER_ENTITY)
        ]
        records.append({"entity": f"e{index}", "name": name, "aliases": "|".join(aliases)})
    triples = [
        (f"e{i}", "related_to", f"e{(i * 7 + 1) % num_entities}") for i in range(num_entities)
    ]
    return KnowledgeGraph.from_triples(triples, entities=records)


def synthetic_documents(
    kg: KnowledgeGraph, megabytes: float, mention_rate: float, rng: random.Random
) -> list[str]:
    """Documents of about 2 KB: filler words with alias mentions in varied case and
    punctuation."""
    surfaces = [alias for entity in kg.entities() for alias in (entity.name, *entity.aliases)]
    documents, size, target = [], 0, int(megabytes * 1_000_000)
    while size < target:
        words = []
        while sum(len(w) + 1 for w in words) < 2000:
            if rng.random() < mention_rate:
                surface = rng.choice(surfaces)
                style = rng.random()
                if style < 0.2:
                    surface = surface.upper()
                elif style < 0.4:
                    surface = f"({surface.title()})"
                elif style < 0.5:
                    surface = surface.replace(" ", "-") + ","
                words.append(surface)
            else:
                words.append(rng.choice(FILLER))
        document = " ".join(words) + "."
        documents.append(document)
        size += len(document)
    return documents


def run(num_aliases: int, megabytes: float, mention_rate: float, seed: int) -> dict:
    rng = random.Random(seed)
    start = time.perf_counter()
    kg = synthetic_graph(num_aliases, rng)
    graph_seconds = time.perf_counter() - start
    documents = synthetic_documents(kg, megabytes, mention_rate, rng)
    start = time.perf_counter()
    linker = EntityLinker(kg, cache_size=0)
    build_seconds = time.perf_counter() - start
    start = time.perf_counter()
    mentions = linker.link_batch(documents)
    link_seconds = time.perf_counter() - start
    characters = sum(len(d) for d in documents)
    return {
        "aliases": num_aliases,
        "entities": kg.num_entities,
        "surface_forms": linker.num_surface_forms,
        "graph_seconds": round(graph_seconds, 3),
        "build_seconds": round(build_seconds, 3),
        "documents": len(documents),
        "characters": characters,
        "link_seconds": round(link_seconds, 3),
        "characters_per_second": round(characters / link_seconds),
        "mentions": sum(len(m) for m in mentions),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "seed": seed,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--aliases", type=int, default=100_000)
    parser.add_argument("--megabytes", type=float, default=2.0)
    parser.add_argument(
        "--mention-rate", type=float, default=0.1, help="share of words that are alias mentions"
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="10k aliases, 0.2 MB of text")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.aliases, args.megabytes = 10_000, 0.2
    result = run(args.aliases, args.megabytes, args.mention_rate, args.seed)
    width = max(len(key) for key in result)
    for key, value in result.items():
        print(f"{key:<{width}}  {value}")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
