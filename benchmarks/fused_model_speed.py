"""Cost of knowledge fusion: forward+backward time of the same FusedModel with knowledge
off (text only) and on (64 entities per sample, 1 fusion layer), on one batch of 32
realistic clinical sentences with the packaged MiniLM; and forward latency of one
text+image+audio sample.

    python benchmarks/fused_model_speed.py [--repeats 20] [--out results/fused_model_speed.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from pathlib import Path

import numpy as np
import torch

import kgmm
from kgmm.fusion import FusionConfig
from kgmm.resources import bundled_graph_path

SENTENCES = [
    "A 54-year-old man with type 2 diabetes and hypertension reports chest pain on exertion "
    "and shortness of breath; he takes metformin and lisinopril.",
    "The patient had fever, a dry cough and fatigue for three days after contact with a "
    "colleague who tested positive for influenza.",
    "She describes a throbbing headache with nausea and sensitivity to light that improves "
    "with ibuprofen and rest in a dark room.",
    "Recurrent wheezing at night and cough after exercise suggest asthma; salbutamol gives "
    "relief within minutes.",
]


def batch_texts(n: int) -> list[dict]:
    return [{"text": SENTENCES[i % len(SENTENCES)], "label": "a"} for i in range(n)]


def time_step(model, batch, bf16: bool) -> float:
    start = time.perf_counter()
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out = model(task="t", **batch)
    out.loss.backward()
    model.zero_grad(set_to_none=True)
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--out", default="results/fused_model_speed.json")
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    kg = kgmm.KnowledgeGraph.load(bundled_graph_path("medical"))
    config = kgmm.FusedConfig(
        text={},
        fusion=FusionConfig(d_model=384, num_heads=6, num_layers=1, dropout=0.0),
        heads={"t": {"type": "classification", "labels": ["a", "b"]}},
        linking={"hops": 2, "max_entities": 64},
        entity_embeddings={"source": "random", "dim": 384},
    )
    model = kgmm.FusedModel(config, kg=kg).train()
    samples = batch_texts(args.batch_size)
    batches = {}
    for mode in ("off", "on"):
        model.set_knowledge(mode)
        batches[mode] = model.collator("t")(samples)
    entities = batches["on"]["entity_mask"].sum(dim=1).float().mean().item()
    tokens = batches["on"]["text"]["attention_mask"].sum(dim=1).float().mean().item()
    rows = []
    for bf16 in (False, True):
        times = {"off": [], "on": []}
        for _ in range(3):  # warm-up
            for mode in ("off", "on"):
                model.set_knowledge(mode)
                time_step(model, batches[mode], bf16)
        for _ in range(args.repeats):  # alternate so both see the same machine load
            for mode in ("off", "on"):
                model.set_knowledge(mode)
                times[mode].append(time_step(model, batches[mode], bf16))
        off, on = statistics.median(times["off"]), statistics.median(times["on"])
        rows.append(
            {
                "precision": "bf16" if bf16 else "fp32",
                "text_only_ms": off * 1e3,
                "text_kg_ms": on * 1e3,
                "ratio": on / off,
            }
        )

    latency = single_sample_latency(kg, args.repeats)
    print(
        f"batch {args.batch_size}, {tokens:.0f} tokens and {entities:.0f} entities per sample "
        f"on average, MiniLM + 1 fusion layer (d_model 384), forward+backward, median of "
        f"{args.repeats}"
    )
    print(f"{'precision':<10} {'text only ms':>13} {'text+KG ms':>11} {'ratio':>7}")
    for row in rows:
        print(
            f"{row['precision']:<10} {row['text_only_ms']:>13.1f} {row['text_kg_ms']:>11.1f} "
            f"{row['ratio']:>7.3f}"
        )
    print(
        f"one text+image+audio sample, forward (eval, fp32): median {latency['median_ms']:.1f} ms, "
        f"p90 {latency['p90_ms']:.1f} ms (collate {latency['collate_ms']:.1f} ms)"
    )
    result = {
        "rows": rows,
        "entities_per_sample": entities,
        "tokens_per_sample": tokens,
        "single_sample": latency,
        "batch_size": args.batch_size,
        "repeats": args.repeats,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(f"wrote {args.out}")


def single_sample_latency(kg, repeats: int) -> dict:
    """One sample with text, a 224x224 image (resnet18) and 2 s of audio."""
    config = kgmm.FusedConfig(
        text={},
        image={"backbone": "resnet18"},
        audio={"kind": "spectrogram"},
        fusion=FusionConfig(d_model=384, num_heads=6, num_layers=1),
        heads={"t": {"type": "classification", "labels": ["a", "b"]}},
        entity_embeddings={"source": "random", "dim": 384},
    )
    model = kgmm.FusedModel(config, kg=kg).eval()
    rng = np.random.default_rng(0)
    sample = {
        "text": SENTENCES[0],
        "image": rng.integers(0, 255, (224, 224, 3), dtype=np.uint8),
        "audio": (rng.standard_normal(32000).astype(np.float32) * 0.1, 16000),
    }
    collate = model.collator("t", targets=False)
    start = time.perf_counter()
    batch = collate([sample])
    collate_ms = (time.perf_counter() - start) * 1e3
    times = []
    with torch.no_grad():
        for i in range(repeats + 3):
            start = time.perf_counter()
            model(task="t", **batch)
            if i >= 3:
                times.append((time.perf_counter() - start) * 1e3)
    return {
        "median_ms": statistics.median(times),
        "p90_ms": float(np.percentile(times, 90)),
        "collate_ms": collate_ms,
    }


if __name__ == "__main__":
    main()
