"""Scale benchmark of the knowledge-graph layer.

Generates a graph of N entities and M triples (heavy-tailed degrees, seeded), writes it as
TSV, then in fresh subprocesses measures load time and resident bytes per triple for kgmm
and for a networkx MultiDiGraph, and 2-hop ``neighbors`` latency (p50/p99).

    python benchmarks/graph_scale.py                      # 1M entities, 5M triples
    python benchmarks/graph_scale.py --entities 20000 --triples 100000   # quick
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def resident_bytes() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def generate(path: Path, entities: int, triples: int, relations: int, seed: int) -> None:
    """Heads and tails drawn from a Zipf-like law over a shuffled id order."""
    rng = np.random.default_rng(seed)
    rank_weights = 1.0 / np.arange(1, entities + 1) ** 0.8
    rank_weights /= rank_weights.sum()
    order = rng.permutation(entities)
    chunk = 1_000_000
    with open(path, "w") as out:
        out.write("head\trelation\ttail\n")
        for start in range(0, triples, chunk):
            n = min(chunk, triples - start)
            heads = order[rng.choice(entities, size=n, p=rank_weights)]
            tails = rng.integers(0, entities, size=n)
            rels = rng.integers(0, relations, size=n)
            out.write(
                "".join(
                    f"entity_{h}\trelation_{r}\tentity_{t}\n" for h, r, t in zip(heads, rels, tails)
                )
            )


def measure_kgmm(path: Path, queries: int, seed: int) -> dict:
    from kgmm import KnowledgeGraph

    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    kg = KnowledgeGraph.load(path)
    seconds = time.perf_counter() - start
    gc.collect()
    after = resident_bytes()
    rng = np.random.default_rng(seed)
    seeds = [
        rng.integers(0, kg.num_entities, size=rng.integers(1, 4)).tolist() for _ in range(queries)
    ]
    latencies = []
    for seed_ids in seeds:
        t0 = time.perf_counter()
        kg.neighbors(seed_ids, hops=2, max_entities=64)
        latencies.append(time.perf_counter() - t0)
    lat_ms = np.asarray(latencies) * 1000
    return {
        "entities": kg.num_entities,
        "triples": kg.num_triples,
        "duplicates_dropped": kg.duplicates_dropped,  # the generator may draw a triple twice
        "load_seconds": seconds,
        "resident_bytes": after - before,
        "bytes_per_triple": (after - before) / kg.num_triples,
        "neighbors_p50_ms": float(np.percentile(lat_ms, 50)),
        "neighbors_p99_ms": float(np.percentile(lat_ms, 99)),
        "neighbors_queries": queries,
    }


def measure_networkx(path: Path) -> dict:
    import networkx as nx

    gc.collect()
    before = resident_bytes()
    start = time.perf_counter()
    graph = nx.MultiDiGraph()
    with open(path) as handle:
        next(handle)
        for line in handle:
            head, relation, tail = line.rstrip("\n").split("\t")
            graph.add_edge(head, tail, key=relation)
    seconds = time.perf_counter() - start
    gc.collect()
    after = resident_bytes()
    edges = graph.number_of_edges()
    return {
        "entities": graph.number_of_nodes(),
        "triples": edges,
        "load_seconds": seconds,
        "resident_bytes": after - before,
        "bytes_per_triple": (after - before) / edges,
    }


def run_child(kind: str, path: Path, queries: int, seed: int) -> dict:
    command = [sys.executable, __file__, "--child", kind, "--file", str(path)]
    command += ["--queries", str(queries), "--seed", str(seed)]
    done = subprocess.run(command, check=True, capture_output=True, text=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--entities", type=int, default=1_000_000)
    parser.add_argument("--triples", type=int, default=5_000_000)
    parser.add_argument("--relations", type=int, default=50)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--skip-networkx", action="store_true")
    parser.add_argument("--out", default="results/graph_scale.json")
    parser.add_argument("--child", choices=["kgmm", "networkx"], help=argparse.SUPPRESS)
    parser.add_argument("--file", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        result = (
            measure_kgmm(Path(args.file), args.queries, args.seed)
            if args.child == "kgmm"
            else (measure_networkx(Path(args.file)))
        )
        print(json.dumps(result))
        return

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.tsv"
        start = time.perf_counter()
        generate(path, args.entities, args.triples, args.relations, args.seed)
        generate_seconds = time.perf_counter() - start
        results = {"kgmm": run_child("kgmm", path, args.queries, args.seed)}
        if not args.skip_networkx:
            results["networkx"] = run_child("networkx", path, args.queries, args.seed)
        file_bytes = path.stat().st_size

    k = results["kgmm"]
    print(
        f"graph: {k['entities']:,} entities, {k['triples']:,} triples, "
        f"TSV {file_bytes / 1e6:.0f} MB (generated in {generate_seconds:.0f} s)"
    )
    print(f"{'loader':<10} {'load s':>8} {'resident MB':>12} {'bytes/triple':>13}")
    for name, row in results.items():
        print(
            f"{name:<10} {row['load_seconds']:>8.1f} {row['resident_bytes'] / 1e6:>12.0f} "
            f"{row['bytes_per_triple']:>13.1f}"
        )
    if "networkx" in results:
        ratio = results["networkx"]["bytes_per_triple"] / k["bytes_per_triple"]
        print(f"networkx / kgmm memory ratio: {ratio:.1f}x")
        results["memory_ratio_networkx_over_kgmm"] = ratio
    print(
        f"neighbors(hops=2, max_entities=64) over {k['neighbors_queries']} random seed sets: "
        f"p50 {k['neighbors_p50_ms']:.3f} ms, p99 {k['neighbors_p99_ms']:.3f} ms"
    )
    results["config"] = {
        **vars(args),
        "file_bytes": file_bytes,
        "generate_seconds": generate_seconds,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
    }
    results["config"].pop("child"), results["config"].pop("file")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=2) + "\n")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
