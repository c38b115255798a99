"""PubMedQA PQA-L: answer yes / no / maybe from a question and its abstract, with a medical KG.

Protocol (Jin et al. 2019): the 500 PMIDs of ``test_ground_truth.json`` are the test set;
the other 500 train the model, with a dev slice (20%) held out per label (seeded) to pick the
epoch by accuracy. Training has two phases: (question, conclusion) of the training questions
(the "reasoning-free" task; ``--conclusion-epochs``), then (question, context), the task
scored. Long abstracts lose their start, not their results (``--truncation-side left``).
The text encoder (packaged MiniLM) reads the (question, context) pair; the
knowledge graph is Hetionet's nodes of the kinds that name things in free text (anatomy,
diseases, symptoms, compounds, drug classes, side effects) with PharmacotherapyDB's
treats/palliates and HSDN's presents edges, linked from question and context. Without the
Hetionet folders the bundled ``graphs/medical.tsv`` is used.

    python examples/medical_qa.py                 # full run, knowledge on
    python examples/medical_qa.py --ablation      # on / off / random, same seed
    python examples/medical_qa.py --quick         # a small slice (smoke test)
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.nn.functional as F

import kgmm
from kgmm.data.hetionet import load_hetionet_graph
from kgmm.data.pubmedqa import load_pubmedqa
from kgmm.fusion import FusionConfig
from kgmm.metrics import accuracy, confidence_interval, format_table, macro_f1
from kgmm.resources import bundled_graph_path
from kgmm.training import finish_run

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TASK = "qa"
TEXT_KINDS = ("Anatomy", "Disease", "Symptom", "Compound", "Pharmacologic Class", "Side Effect")
QUICK_KINDS = ("Disease", "Symptom")
PUBLISHED = {
    "majority baseline (always yes)": {"accuracy": 0.552, "macro_f1": 0.2371},
    "BioBERT + 211k PQA-A, Jin et al. 2019": {"accuracy": 0.681, "macro_f1": 0.5272},
    "single human, Jin et al. 2019": {"accuracy": 0.780, "macro_f1": 0.7219},
}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DATASETS / "pubmedqa_pqal")
    parser.add_argument(
        "--kg-dir",
        type=Path,
        default=DATASETS,
        help="folder holding medkg_hetionet_nodes, medkg_pharmacotherapydb and "
        "medkg_hsdn_symptom_disease; the bundled graphs/medical.tsv when they are absent",
    )
    parser.add_argument("--kinds", nargs="+", default=None, help="Hetionet node kinds to keep")
    parser.add_argument("--out", type=Path, default=Path("runs/medical_qa"))
    parser.add_argument("--knowledge", choices=("on", "off", "random"), default="on")
    parser.add_argument("--ablation", action="store_true", help="run on, off and random")
    parser.add_argument("--quick", action="store_true", help="a small slice, about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--max-length", type=int, default=None)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--encoder-lr", type=float, default=2e-5)
    parser.add_argument("--head-lr", type=float, default=1e-3)
    parser.add_argument("--gate-lr", type=float, default=2e-2)
    parser.add_argument("--dev-fraction", type=float, default=0.2)
    parser.add_argument(
        "--truncation-side",
        choices=("left", "right"),
        default="left",
        help="which end of a too-long abstract to drop (left keeps the results)",
    )
    parser.add_argument(
        "--text-model",
        default=None,
        help="Hugging Face checkpoint folder or name for the text encoder (default: the "
        "packaged MiniLM; a biomedical checkpoint such as BioLinkBERT needs its own download)",
    )
    parser.add_argument(
        "--freeze-encoder", action="store_true", help="train only the fusion and the head"
    )
    parser.add_argument("--class-weights", choices=("balanced", "none"), default="none")
    parser.add_argument(
        "--select", choices=("accuracy", "macro_f1"), default="accuracy", help="dev metric"
    )
    parser.add_argument(
        "--conclusion-epochs",
        type=int,
        default=2,
        help="first train on (question, conclusion) of the training questions",
    )
    args = parser.parse_args(argv)
    args.epochs = args.epochs or 3
    args.max_length = args.max_length or (128 if args.quick else 256)
    args.kinds = args.kinds or list(QUICK_KINDS if args.quick else TEXT_KINDS)
    return args


def split_per_label(samples: list[dict], fraction: float, seed: int) -> tuple[list, list]:
    """``(train, dev)``: ``fraction`` of each answer's samples (at least one) go to dev."""
    by_label: dict[str, list[dict]] = {}
    for sample in samples:
        by_label.setdefault(sample["answer"], []).append(sample)
    rng = random.Random(seed)
    train, dev = [], []
    for label in sorted(by_label):
        group = list(by_label[label])
        rng.shuffle(group)
        cut = max(1, round(len(group) * fraction))
        dev.extend(group[:cut])
        train.extend(group[cut:])
    rng.shuffle(train)
    return train, dev


def load_graph(args: argparse.Namespace) -> tuple[kgmm.KnowledgeGraph, str]:
    nodes = args.kg_dir / "medkg_hetionet_nodes" / "hetionet-v1.0-nodes.tsv"
    if not nodes.is_file():
        path = bundled_graph_path("medical")
        return kgmm.KnowledgeGraph.load(path), f"bundled {Path(path).name}"
    edges = [
        args.kg_dir / "medkg_pharmacotherapydb" / "triples_named.tsv",
        args.kg_dir / "medkg_hsdn_symptom_disease" / "triples_named.tsv",
    ]
    kg = load_hetionet_graph(nodes, [e for e in edges if e.is_file()], kinds=set(args.kinds))
    return kg, f"Hetionet nodes ({', '.join(args.kinds)}) + PharmacotherapyDB + HSDN"


def entity_embeddings(kg: kgmm.KnowledgeGraph, cache: Path) -> kgmm.EntityEmbeddings:
    """MiniLM over entity names, cached as safetensors (reused when the keys match)."""
    keys = [kg.entity(i).key for i in range(kg.num_entities)]
    if cache.is_file():
        cached = kgmm.EntityEmbeddings.load(cache)
        if list(cached.entity_keys) == keys:
            return cached
    embeddings = kgmm.EntityEmbeddings.from_text(kg, progress=True)
    cache.parent.mkdir(parents=True, exist_ok=True)
    embeddings.save(cache)
    return embeddings


def build_model(
    kg: kgmm.KnowledgeGraph,
    embeddings: kgmm.EntityEmbeddings,
    answers: list[str],
    knowledge: str,
    args: argparse.Namespace,
) -> kgmm.FusedModel:
    config = kgmm.FusedConfig(
        text={
            "model_name_or_path": args.text_model,
            "max_length": args.max_length,
            "truncation_side": args.truncation_side,
            "freeze": args.freeze_encoder,
        },
        fusion=FusionConfig(d_model=384, num_heads=6, dropout=0.1, knowledge=knowledge),
        heads={TASK: {"type": "qa", "answers": answers, "dropout": 0.1}},
        linking={"hops": 1, "max_entities": 48},
        seed=args.seed,
    )
    return kgmm.FusedModel(config, kg=kg, entity_embeddings=embeddings)


def optimizer_for(model: kgmm.FusedModel, args: argparse.Namespace) -> torch.optim.AdamW:
    """The pretrained encoder at a small learning rate, the new fusion and head at a larger
    one, and the zero-initialised knowledge gates higher still so they can open."""
    groups: dict[str, list] = {"encoder": [], "new": [], "gate": []}
    for name, parameter in model.named_parameters():
        if not parameter.requires_grad:
            continue
        groups[_parameter_group(name)].append(parameter)
    rates = {"encoder": args.encoder_lr, "new": args.head_lr, "gate": args.gate_lr}
    return torch.optim.AdamW(
        [
            {"params": params, "lr": rates[kind], "weight_decay": 0.0 if kind == "gate" else 0.01}
            for kind, params in groups.items()
            if params
        ]
    )


def _parameter_group(name: str) -> str:
    if name.endswith("gate"):
        return "gate"
    return "encoder" if name.startswith("encoders.") else "new"


@torch.no_grad()
def predict(model: kgmm.FusedModel, samples: list[dict], batch_size: int = 32) -> list[str]:
    with torch.autocast("cpu", dtype=torch.bfloat16):
        return model.predict(samples, task=TASK, batch_size=batch_size)


def scores(model: kgmm.FusedModel, samples: list[dict]) -> dict[str, float]:
    truth = [s["answer"] for s in samples]
    predicted = predict(model, samples)
    return {"accuracy": accuracy(truth, predicted), "macro_f1": macro_f1(truth, predicted)}


def class_weights(samples: list[dict], answers: list[str], mode: str) -> torch.Tensor | None:
    """``balanced``: each answer weighs ``n / (k * count)``; ``none``: plain cross-entropy."""
    if mode == "none":
        return None
    counts = Counter(s["answer"] for s in samples)
    return torch.tensor([len(samples) / (len(answers) * counts[a]) for a in answers])


def fit(
    model: kgmm.FusedModel, samples: list[dict], epochs: int, args: argparse.Namespace
) -> Iterator[tuple[int, float]]:
    """Train for ``epochs`` (bf16 autocast, warmup then linear decay, clipped gradients),
    yielding ``(epoch, mean loss)`` after each."""
    weight = class_weights(samples, model.heads[TASK].answers, args.class_weights)
    collate = model.collator(TASK)
    optimizer = optimizer_for(model, args)
    total = -(-len(samples) // args.batch_size) * epochs
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min((step + 1) / (0.1 * total), max(0.0, (total - step) / total))
    )
    rng = random.Random(args.seed)
    for epoch in range(1, epochs + 1):
        model.train()
        order = list(samples)
        rng.shuffle(order)
        losses = []
        for start in range(0, len(order), args.batch_size):
            batch = collate(order[start : start + args.batch_size])
            with torch.autocast("cpu", dtype=torch.bfloat16):
                logits = model(task=TASK, **batch).logits
            loss = F.cross_entropy(logits.float(), batch["answer_index"], weight=weight)
            optimizer.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            optimizer.step()
            schedule.step()
            losses.append(float(loss.detach()))
        yield epoch, sum(losses) / len(losses)


def conclusion_samples(samples: list[dict]) -> list[dict]:
    """(question, conclusion) pairs of training questions: the reasoning-free task of Jin et
    al. 2019, used as a first phase (the test questions' conclusions are never read)."""
    return [
        {**s, "text": (s["text"][0], s["long_answer"])} for s in samples if s.get("long_answer")
    ]


def train(
    model: kgmm.FusedModel, train_set: list[dict], dev_set: list[dict], args: argparse.Namespace
) -> dict:
    """An optional first phase on the training questions' conclusions, then (question,
    context); keeps the weights of the epoch with the best dev ``args.select`` (ties: the
    earlier epoch)."""
    phase = []
    if args.conclusion_epochs:
        conclusions = conclusion_samples(train_set)
        for epoch, loss in fit(model, conclusions, args.conclusion_epochs, args):
            dev = scores(model, dev_set)
            phase.append({"epoch": epoch, "loss": loss, **dev})
            print(f"  conclusions epoch {epoch}: loss {loss:.4f}  dev {_scores_text(dev)}")
    best: dict = {args.select: -1.0}
    history = []
    started = time.perf_counter()
    for epoch, loss in fit(model, train_set, args.epochs, args):
        dev = scores(model, dev_set)
        gate = model.fusion.gate_values()[0]
        seconds = time.perf_counter() - started
        history.append({"epoch": epoch, "loss": loss, **dev, "gate": gate, "seconds": seconds})
        print(
            f"  epoch {epoch}: loss {loss:.4f}  dev {_scores_text(dev)}  gate {gate:+.3f}  "
            f"{seconds:.0f} s",
            flush=True,
        )
        if dev[args.select] > best[args.select]:
            state = {k: v.detach().clone() for k, v in model.state_dict().items()}
            best = {"epoch": epoch, **dev, "state": state}
        started = time.perf_counter()
    model.load_state_dict(best.pop("state"))
    return {"best_epoch": best["epoch"], "dev": best, "conclusion_phase": phase, "history": history}


def _scores_text(scores: dict[str, float]) -> str:
    return f"accuracy {scores['accuracy']:.3f}  macro-F1 {scores['macro_f1']:.3f}"


def run_one(
    knowledge: str,
    kg: kgmm.KnowledgeGraph,
    embeddings: kgmm.EntityEmbeddings,
    splits: tuple[list, list, list],
    args: argparse.Namespace,
) -> dict:
    train_set, dev_set, test_set = splits
    torch.manual_seed(args.seed)
    answers = sorted({s["answer"] for s in train_set + dev_set + test_set})
    model = build_model(kg, embeddings, answers, knowledge, args)
    start = time.perf_counter()
    print(f"knowledge={knowledge}", flush=True)
    trained = train(model, train_set, dev_set, args)
    test = scores(model, test_set)
    correct = round(test["accuracy"] * len(test_set))
    low, high = confidence_interval(correct, len(test_set))
    return {
        "knowledge": knowledge,
        "test_accuracy": test["accuracy"],
        "test_accuracy_ci95": [low, high],
        "test_macro_f1": test["macro_f1"],
        **trained,
        "seconds": time.perf_counter() - start,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    train_dev, test_set = load_pubmedqa(args.data_dir)
    train_set, dev_set = split_per_label(train_dev, args.dev_fraction, args.seed)
    if args.quick:
        train_set = split_per_label(train_set, 96 / len(train_set), args.seed)[1]
        dev_set = split_per_label(dev_set, 0.5, args.seed)[1]
        test_set = split_per_label(test_set, 64 / len(test_set), args.seed)[1]
    kg, graph_name = load_graph(args)
    print(f"{graph_name}: {kg}")
    embeddings = entity_embeddings(kg, args.out / f"entities-{kg.num_entities}.safetensors")
    majority_label, majority_count = Counter(s["answer"] for s in train_set).most_common(1)[0]
    majority = {
        "accuracy": sum(s["answer"] == majority_label for s in test_set) / len(test_set),
        "macro_f1": macro_f1([s["answer"] for s in test_set], [majority_label] * len(test_set)),
    }
    print(
        f"{len(train_set)} train / {len(dev_set)} dev / {len(test_set)} test questions; "
        f"majority ({majority_label!r}) test accuracy {majority['accuracy']:.3f}"
    )
    modes = ("on", "off", "random") if args.ablation else (args.knowledge,)
    runs = [run_one(mode, kg, embeddings, (train_set, dev_set, test_set), args) for mode in modes]
    rows = [
        {
            "model": f"MiniLM + KG fusion, knowledge={r['knowledge']}",
            "accuracy": r["test_accuracy"],
            "95% CI": "{:.3f}-{:.3f}".format(*r["test_accuracy_ci95"]),
            "macro_f1": r["test_macro_f1"],
            "best epoch": r["best_epoch"],
        }
        for r in runs
    ]
    rows.append({"model": "majority class (measured)", **majority})
    if not args.quick:
        rows += [{"model": f"published: {name}", **values} for name, values in PUBLISHED.items()]
    print(format_table(rows, ["model", "accuracy", "95% CI", "macro_f1", "best epoch"], ".3f"))
    results = {
        "dataset": "PubMedQA PQA-L",
        "quick": args.quick,
        "test_questions": len(test_set),
        "graph": {"source": graph_name, **kg.stats()},
        "runs": runs,
        "majority_baseline": majority,
        "published": PUBLISHED,
    }
    return finish_run(args, results, started)


if __name__ == "__main__":
    try:
        main(sys.argv[1:])
    except kgmm.KGMMError as error:
        sys.exit(f"medical_qa: error: {error}")
