"""PubMedQA PQA-L: answer yes / no / maybe from a question and its abstract, with a medical KG.

Protocol (Jin et al. 2019): the 500 PMIDs of ``test_ground_truth.json`` are the test set;
the other 500 train the model, with a dev slice (20%) held out per label (seeded) to pick the
epoch by accuracy. Training (``kgmm.Trainer``) has two phases: (question, conclusion) of the
training questions (the "reasoning-free" task; ``--conclusion-epochs``), then (question,
context), the task scored. Long abstracts lose their start, not their results
(``--truncation-side left``). The text encoder (packaged MiniLM) reads the (question,
context) pair; the knowledge graph is Hetionet's nodes of the kinds that name things in
free text (anatomy, diseases, symptoms, compounds, drug classes, side effects) with
PharmacotherapyDB's treats/palliates and HSDN's presents edges, linked from question and
context. Without the Hetionet folders the bundled ``graphs/medical.tsv`` is used.

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
from pathlib import Path

import torch

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
    parser.add_argument(
        "--quick", action="store_true", help="smoke test (about 4 min, one fp32 thread)"
    )
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
    train_set: list[dict],
    knowledge: str,
    args: argparse.Namespace,
) -> kgmm.FusedModel:
    head = {"type": "qa", "answers": answers, "dropout": 0.1}
    if args.class_weights == "balanced":  # each answer weighs n / (k * count)
        counts = Counter(s["answer"] for s in train_set)
        head["class_weights"] = [len(train_set) / (len(answers) * counts[a]) for a in answers]
    config = kgmm.FusedConfig(
        text={
            "model_name_or_path": args.text_model,
            "max_length": args.max_length,
            "truncation_side": args.truncation_side,
            "freeze": args.freeze_encoder,
        },
        fusion=FusionConfig(d_model=384, num_heads=6, dropout=0.1, knowledge=knowledge),
        heads={TASK: head},
        linking={"hops": 1, "max_entities": 48},
        seed=args.seed,
    )
    return kgmm.FusedModel(config, kg=kg, entity_embeddings=embeddings)


def training_arguments(
    args: argparse.Namespace, output_dir: Path, epochs: int, steps_per_epoch: int, select: bool
) -> kgmm.TrainingArguments:
    """bf16 autocast on bf16 hardware (``bf16="auto"``), 10% warmup then linear decay,
    clipped gradients, a dev evaluation after every epoch. The pretrained encoder learns at a
    small rate, the new fusion and head (the default rate) faster, and the zero-initialised
    knowledge gates faster still so they can open."""
    return kgmm.TrainingArguments(
        output_dir=str(output_dir),
        num_epochs=epochs,
        batch_size=args.batch_size,
        eval_batch_size=32,
        learning_rate=args.head_lr,
        learning_rates={"*gate": args.gate_lr, "encoders.*": args.encoder_lr},
        warmup_ratio=0.1,
        bf16="auto",
        eval_steps=steps_per_epoch,
        logging_steps=steps_per_epoch,
        save_total_limit=1,
        metric_for_best_model=f"{TASK}/{args.select}" if select else None,
        seed=args.seed,
        progress_bar=False,
    )


class EpochReport(kgmm.training.TrainerCallback):
    """Keeps and prints each epoch's mean training loss, dev scores and knowledge gate."""

    def __init__(self, phase: str) -> None:
        self.phase = phase
        self.history: list[dict] = []
        self._loss = float("nan")

    def on_log(self, trainer: kgmm.Trainer, record: dict) -> None:
        self._loss = record["loss"]

    def on_evaluate(self, trainer: kgmm.Trainer, step: int, metrics: dict[str, float]) -> None:
        entry = {
            "epoch": round(step / trainer.steps_per_epoch),
            "step": step,
            "loss": self._loss,
            "accuracy": metrics[f"{TASK}/accuracy"],
            "macro_f1": metrics[f"{TASK}/macro_f1"],
            "gate": trainer.model.fusion.gate_values()[0],
            "training_seconds": trainer.training_seconds,
        }
        self.history.append(entry)
        print(
            f"  {self.phase} epoch {entry['epoch']}: loss {entry['loss']:.4f}  dev "
            f"{_scores_text(entry)}  gate {entry['gate']:+.3f}  "
            f"{entry['training_seconds']:.0f} s",
            flush=True,
        )


def conclusion_samples(samples: list[dict]) -> list[dict]:
    """(question, conclusion) pairs of training questions: the reasoning-free task of Jin et
    al. 2019, used as a first phase (the test questions' conclusions are never read)."""
    return [
        {**s, "text": (s["text"][0], s["long_answer"])} for s in samples if s.get("long_answer")
    ]


def train(
    model: kgmm.FusedModel,
    train_set: list[dict],
    dev_set: list[dict],
    output_dir: Path,
    args: argparse.Namespace,
) -> tuple[kgmm.FusedModel, dict]:
    """``kgmm.Trainer`` on the training questions' conclusions (optional first phase), then
    on (question, context); returns the model of the epoch with the best dev
    ``args.select`` (ties: the earlier epoch) and the training record."""
    conclusion_history: list[dict] = []
    with_conclusion = conclusion_samples(train_set)
    if args.conclusion_epochs and not with_conclusion:
        print("  no training question has a long answer: the conclusion phase is skipped")
    elif args.conclusion_epochs:
        conclusion_dir = output_dir / "conclusions"
        _, conclusion_history = fit(
            model, with_conclusion, dev_set, args.conclusion_epochs, conclusion_dir, args, False
        )
    context_dir = output_dir / "context"
    result, history = fit(model, train_set, dev_set, args.epochs, context_dir, args, True)
    best = next(epoch for epoch in history if epoch["step"] == result.best_step)
    return kgmm.FusedModel.from_pretrained(context_dir / "best"), {
        "best_epoch": best["epoch"],
        "dev": best,
        "conclusion_phase": conclusion_history,
        "history": history,
    }


def fit(
    model: kgmm.FusedModel,
    samples: list[dict],
    dev_set: list[dict],
    epochs: int,
    phase_dir: Path,
    args: argparse.Namespace,
    select: bool,
) -> tuple[kgmm.training.TrainResult, list[dict]]:
    """One ``kgmm.Trainer`` run of ``epochs`` over ``samples`` evaluated on ``dev_set``
    after each epoch; with ``select`` the best epoch by ``args.select`` is saved to
    ``phase_dir/best``. Returns the result and the per-epoch record."""
    steps_per_epoch = -(-len(samples) // args.batch_size)
    training = training_arguments(args, phase_dir, epochs, steps_per_epoch, select)
    report = EpochReport(phase_dir.name)
    trainer = kgmm.Trainer(model, {TASK: samples}, {TASK: dev_set}, training, [report])
    return trainer.train(), report.history


def scores(model: kgmm.FusedModel, samples: list[dict]) -> dict[str, float]:
    truth = [s["answer"] for s in samples]
    predicted = model.predict(samples, task=TASK, batch_size=32)  # bf16 on bf16 hardware
    return {"accuracy": accuracy(truth, predicted), "macro_f1": macro_f1(truth, predicted)}


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
    model = build_model(kg, embeddings, answers, train_set, knowledge, args)
    start = time.perf_counter()
    print(f"knowledge={knowledge}", flush=True)
    model, trained = train(model, train_set, dev_set, args.out / f"knowledge-{knowledge}", args)
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
