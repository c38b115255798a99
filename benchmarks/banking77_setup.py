"""The measuring ground the fine-tuning technique benchmarks share: BANKING77 intents.

Every technique benchmark (PEFT, adversarial training, augmentation, distillation, online
adaptation, differential privacy) trains the same model on the same data through the public
API, so their tables compare like with like:

* data: ``load_setting`` gives N examples per intent from ``train.csv`` (the few-shot
  setting of Casanueva et al. 2020, seeded) and the official 3,080-utterance ``test.csv``;
  ``quick=True`` keeps 5 intents and a few examples each, for CI smoke runs;
* model: the packaged MiniLM text encoder, one fusion layer over ``graphs/banking.tsv``
  (1-hop, 32 entities), a classification head; ``build_model`` takes overrides;
* training: ``training_arguments`` (bf16 autocast where the
  device has bf16 hardware, warmup 10%, length-grouped batches, the
  fresh parts of the model at larger learning rates, as ``examples/customer_support.py``);
* measuring: ``run_isolated`` runs one configuration in a fresh process and adds its peak
  resident memory, so configurations do not inherit each other's allocations.
"""

from __future__ import annotations

import json
import multiprocessing
import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

import kgmm
from kgmm.data.intents import few_shot, load_intent_csv
from kgmm.fusion import FusionConfig
from kgmm.metrics import accuracy
from kgmm.training import run_environment

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO.parent / "shared" / "datasets" / "banking77"
GRAPH = REPO / "graphs" / "banking.tsv"
TASK = "intent"
FRESH_LEARNING_RATES = {"*cross_attn_gate*": 1e-2, "fusion.*": 5e-4, "heads.*": 1e-3}
QUICK_INTENTS, QUICK_TRAIN, QUICK_TEST = 5, 8, 8


def load_setting(
    data_dir: Path, per_label: int = 10, seed: int = 0, quick: bool = False
) -> tuple[list[dict], list[dict], list[str]]:
    """``(train, test, labels)``: ``per_label`` training utterances per intent (0: the whole
    ``train.csv``) and the test set; ``quick`` keeps the first 5 intents, 8 training and 8
    test utterances each."""
    data_dir = Path(data_dir)
    if not (data_dir / "train.csv").is_file():
        raise kgmm.DataError(f"{data_dir}: no train.csv; pass --data-dir (BANKING77 folder)")
    train = load_intent_csv(data_dir / "train.csv")
    test = load_intent_csv(data_dir / "test.csv")
    if quick:
        kept = set(sorted({s["label"] for s in train})[:QUICK_INTENTS])
        train = few_shot([s for s in train if s["label"] in kept], QUICK_TRAIN, seed)
        test = few_shot([s for s in test if s["label"] in kept], QUICK_TEST, seed)
    elif per_label:
        train = few_shot(train, per_label, seed)
    return train, test, sorted({s["label"] for s in train})


def build_model(
    labels: list[str],
    knowledge: str = "on",
    seed: int = 0,
    max_length: int = 64,
    text: dict[str, Any] | None = None,
    **fusion: Any,
) -> kgmm.FusedModel:
    """MiniLM + one fusion layer over the banking graph + an intent head; ``text`` adds
    TextEncoder arguments (e.g. ``{"num_hidden_layers": 3}``), ``fusion`` FusionConfig
    fields."""
    torch.manual_seed(seed)
    fusion_fields = {"d_model": 384, "num_heads": 6, "num_layers": 1, "dropout": 0.1}
    config = kgmm.FusedConfig(
        text={"max_length": max_length, **(text or {})},
        fusion=FusionConfig(**{**fusion_fields, **fusion, "knowledge": knowledge}),
        heads={TASK: {"type": "classification", "labels": labels}},
        linking={"hops": 1, "max_entities": 32},
        seed=seed,
    )
    return kgmm.FusedModel(config, kg=kgmm.KnowledgeGraph.load(GRAPH))


def training_arguments(output_dir: Path, epochs: float, **overrides: Any) -> kgmm.TrainingArguments:
    """The shared schedule: batch 32, encoder 1e-4, fresh parts faster, bf16 where the
    device has bf16 hardware (fp32 elsewhere), warmup 10%."""
    fields: dict[str, Any] = {
        "output_dir": str(output_dir),
        "num_epochs": epochs,
        "batch_size": 32,
        "eval_batch_size": 128,
        "learning_rate": 1e-4,
        "learning_rates": FRESH_LEARNING_RATES,
        "warmup_ratio": 0.1,
        "bf16": "auto",
        "group_by_length": True,
        "save_total_limit": 1,
        "progress_bar": False,
    }
    return kgmm.TrainingArguments(**{**fields, **overrides})


def test_accuracy(model: kgmm.FusedModel, samples: list[dict]) -> float:
    """Accuracy of ``model`` on ``samples`` (``text``/``label`` dicts)."""
    predicted = model.predict(samples, task=TASK, batch_size=128)
    return accuracy([s["label"] for s in samples], predicted)


def trainable_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _child(
    function: Callable[..., dict], args: tuple, threads: int, queue: multiprocessing.Queue
) -> None:
    torch.set_num_threads(threads)
    started = time.perf_counter()
    result = function(*args)
    result["wall_seconds"] = time.perf_counter() - started
    result["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    queue.put(result)


def run_isolated(function: Callable[..., dict], *args: Any, threads: int = 1) -> dict:
    """``function(*args)`` (a module-level function returning a dict) in a fresh spawned
    process with ``threads`` intra-op threads; adds ``wall_seconds`` and ``peak_rss_mib``
    (that process's peak resident memory)."""
    context = multiprocessing.get_context("spawn")
    queue = context.Queue()
    process = context.Process(target=_child, args=(function, args, threads, queue))
    process.start()
    result = queue.get()
    process.join()
    if process.exitcode != 0:
        raise RuntimeError(f"{function.__name__} failed in its process (exit {process.exitcode})")
    return result


def write_results(path: Path, benchmark: str, rows: list[dict], **extra: Any) -> None:
    """Write ``{"benchmark", "rows", ...extra, hardware, git_commit}`` as JSON to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    summary = {"benchmark": benchmark, "rows": rows, **extra, **run_environment()}
    path.write_text(json.dumps(summary, indent=2) + "\n")
    print(f"results written to {path}")
