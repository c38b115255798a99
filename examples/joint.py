"""One model, three heads: medical QA, translation and recommendation trained jointly.

One ``FusedModel`` shares the MiniLM text encoder, the fusion module and the entity table of
one merged graph (Hetionet medical nodes with PharmacotherapyDB and HSDN edges, the en-de
lexicon, the Last.FM Satori graph; namespaces ``med:``, ``lex:``, ``fm:``) between three
heads: PubMedQA yes/no/maybe, Multi30k translation, Last.FM click prediction. The multi-task
Trainer draws the tasks in turn (round robin, a task with a larger budget getting more turns
per cycle) for the sum of the per-task budgets ``--steps-per-task`` (one number for every
task, or ``task=N`` items); each single-task model (same architecture, one head) gets its
task's budget, so the per-task step budgets and the total are the same. Test metrics: PubMedQA
accuracy and macro-F1 on the 500 official test questions, sacreBLEU and tokenised BLEU on
test_2016_flickr (greedy decoding), AUC and F1 on the KGCN test rows of Last.FM; and the
parameter count of the joint model against the three single-task models together.

    python examples/joint.py                          # joint + three single-task runs
    python examples/joint.py --steps-per-task 1000 --runs joint
    python examples/joint.py --steps-per-task 300 mt=1500   # translation needs more steps
    python examples/joint.py --quick                  # smoke test: ~1 min (bf16 CPU), ~4 (fp32)
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections import defaultdict
from pathlib import Path

import torch

import kgmm
from kgmm.data import (
    kgcn_protocol,
    lexicon_graph,
    load_kgrec,
    load_parallel,
    vocabulary,
)
from kgmm.data.hetionet import load_hetionet_graph
from kgmm.data.pubmedqa import load_pubmedqa
from kgmm.fusion import FusionConfig
from kgmm.heads import train_target_tokenizer
from kgmm.metrics import format_table, tokenized_bleu
from kgmm.training import evaluate_task, finish_run, write_results

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
TASKS = ("qa", "mt", "rec")
RUNS = ("joint", *(f"single-{task}" for task in TASKS))
MEDICAL_KINDS = ("Anatomy", "Disease", "Symptom", "Compound", "Pharmacologic Class", "Side Effect")
QUICK_KINDS = ("Disease", "Symptom")
ANSWERS = ["yes", "no", "maybe"]
BATCH_SIZES = {"qa": 16, "mt": 64, "rec": 512}
# The encoder is pretrained; the rest starts fresh. The recommendation head learns user and
# item embeddings from scratch and needs a much larger rate (as in examples/recommendation.py).
LEARNING_RATES = {
    "*cross_attn_gate*": 1e-2,
    "heads.rec.*": 5e-3,
    "heads.*": 5e-4,
    "fusion.*": 5e-4,
}
# --quick: QA questions, translation pairs, Last.FM users, test items per task, steps per task.
QUICK_QA, QUICK_MT, QUICK_USERS, QUICK_TEST, QUICK_STEPS = 48, 300, 200, 24, 16
DEFAULT_STEPS = 300  # optimizer steps per task
QUICK_MAX_LENGTH = 96
QUICK_BATCH_SIZES = {"qa": 8, "mt": 64, "rec": 256}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--datasets", type=Path, default=DATASETS, help="folder of the datasets")
    parser.add_argument("--pubmedqa", default="pubmedqa_pqal")
    parser.add_argument("--multi30k", default="multi30k")
    parser.add_argument("--lexicon", default="lexicon_en_de")
    parser.add_argument("--lastfm", default="kgrec_music_lastfm")
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "joint")
    parser.add_argument(
        "--steps-per-task",
        nargs="+",
        metavar="N|TASK=N",
        help="optimizer steps per task: one number for all, task=N for one (qa, mt, rec); "
        f"default {DEFAULT_STEPS} ({QUICK_STEPS} with --quick)",
    )
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS,
        default=list(RUNS),
        help="which models to train (separate processes can share the work)",
    )
    parser.add_argument("--quick", action="store_true", help="small slices, for a smoke test")
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="of the encoder")
    parser.add_argument("--max-length", type=int, default=256, help="text tokens")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    default = QUICK_STEPS if args.quick else DEFAULT_STEPS
    args.steps_per_task = step_budgets(args.steps_per_task or [], default)
    return args


def step_budgets(items: list[str], default: int = DEFAULT_STEPS) -> dict[str, int]:
    """``["300", "mt=1500"]`` -> ``{"qa": 300, "mt": 1500, "rec": 300}``; tasks that no item
    names get ``default``."""
    steps = dict.fromkeys(TASKS, default)
    for item in items:
        task, _, number = item.rpartition("=")
        if task and task not in TASKS:
            raise kgmm.ConfigError(f"--steps-per-task: unknown task {task!r}; tasks: {TASKS}")
        if not number.isdigit() or int(number) < 1:
            raise kgmm.ConfigError(f"--steps-per-task: {item!r} is not N or TASK=N with N >= 1")
        steps.update({task: int(number)} if task else dict.fromkeys(TASKS, int(number)))
    return steps


def folder(args: argparse.Namespace, name: str) -> Path:
    path = args.datasets / name
    if not path.is_dir():
        raise kgmm.DataError(f"{path}: dataset folder not found (--datasets, --{name})")
    return path


def load_tasks(args: argparse.Namespace) -> tuple[dict, dict, kgmm.KnowledgeGraph, dict]:
    """``(train, test, merged graph, recommendation-head fields)`` of the three tasks."""
    qa_train, qa_test = load_pubmedqa(folder(args, args.pubmedqa))
    multi30k = folder(args, args.multi30k)
    mt_train = load_parallel(multi30k, "train", "en", "de")
    mt_test = load_parallel(multi30k, "test_2016_flickr", "en", "de")
    lastfm = load_kgrec(folder(args, args.lastfm))
    if args.quick:
        qa_train, qa_test = qa_train[:QUICK_QA], qa_test[:QUICK_TEST]
        mt_train, mt_test = mt_train[:QUICK_MT], mt_test[:QUICK_TEST]
        lastfm.ratings = lastfm.ratings[lastfm.ratings[:, 0] < QUICK_USERS]
        lastfm.num_users = min(lastfm.num_users, QUICK_USERS)
    splits = kgcn_protocol(lastfm)

    def rows(part) -> list[dict]:
        return [{"text": "", "user": int(u), "item": int(i), "label": int(y)} for u, i, y in part]

    rec_train, rec_test = rows(splits.train), rows(splits.test)
    if args.quick:
        rec_test = rec_test[: 4 * QUICK_TEST]

    medical_dir = args.datasets
    medical = load_hetionet_graph(
        medical_dir / "medkg_hetionet_nodes" / "hetionet-v1.0-nodes.tsv",
        [
            medical_dir / "medkg_pharmacotherapydb" / "triples_named.tsv",
            medical_dir / "medkg_hsdn_symptom_disease" / "triples_named.tsv",
        ],
        kinds=set(QUICK_KINDS if args.quick else MEDICAL_KINDS),
    )
    lexicon_dir = folder(args, args.lexicon)
    sources = [s["text"] for s in mt_train + mt_test]
    lexicon_files = sorted(p for p in lexicon_dir.iterdir() if p.suffix in (".tsv", ".txt"))
    lexicon = lexicon_graph(lexicon_files, "en", "de", vocabulary(sources))
    kg = kgmm.KnowledgeGraph.merge(medical, lexicon, lastfm.kg, namespaces=["med", "lex", "fm"])
    item_entities = [
        kg.entity_id(f"fm:{lastfm.kg.entity(e).key}") if e >= 0 else -1
        for e in lastfm.item_entities
    ]
    history = defaultdict(list)
    for sample in rec_train:
        if sample["label"] == 1:
            history[sample["user"]].append(sample["item"])
    rec = {
        "num_users": lastfm.num_users,
        "num_items": lastfm.num_items,
        "item_entity_ids": item_entities,
        "history": dict(history),
    }
    train = {"qa": qa_train, "mt": mt_train, "rec": rec_train}
    test = {"qa": qa_test, "mt": mt_test, "rec": rec_test}
    return train, test, kg, rec


def head_specs(tokenizer, rec: dict) -> dict[str, dict]:
    return {
        "qa": {"type": "qa", "answers": ANSWERS, "dropout": 0.1},
        "mt": {
            "type": "translation",
            "tokenizer": tokenizer,
            "num_layers": 3,
            "num_heads": 6,
            "ffn_dim": 1024,
            "max_length": 128,
            "beam_size": 1,
        },
        "rec": {
            "type": "recommendation",
            "num_users": rec["num_users"],
            "num_items": rec["num_items"],
            "item_entity_ids": rec["item_entity_ids"],
            "history_size": 50,
            "max_item_entities": 16,
            "l2": 1e-4,
            "item_fields": ["entities"],
        },
    }


def run_heads(name: str, heads: dict[str, dict]) -> dict[str, dict]:
    """The heads of run ``name``: all three for ``joint``, one for ``single-<task>``."""
    if name == "joint":
        return heads
    task = name.removeprefix("single-")
    return {task: heads[task]}


def build_model(
    kg: kgmm.KnowledgeGraph,
    embeddings: kgmm.EntityEmbeddings | None,
    heads: dict[str, dict],
    rec: dict,
    args: argparse.Namespace,
) -> kgmm.FusedModel:
    link_types = sorted({kg.entity(i).type for i in range(kg.num_entities)} - {"de", ""})
    config = kgmm.FusedConfig(
        text={"max_length": QUICK_MAX_LENGTH if args.quick else args.max_length},
        fusion=FusionConfig(d_model=384, num_heads=6, num_layers=1, dropout=0.1),
        heads=heads,
        linking={"hops": 1, "max_entities": 48, "types": link_types},
        entity_embeddings={"source": "random", "dim": 384} if embeddings is None else {},
        seed=args.seed,
    )
    model = kgmm.FusedModel(config, kg=kg, entity_embeddings=embeddings)
    if "rec" in model.heads:
        model.heads["rec"].set_history(rec["history"])
    return model


def parameter_count(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def train_and_test(
    name: str,
    tasks: tuple[str, ...],
    model: kgmm.FusedModel,
    train: dict,
    test: dict,
    args: argparse.Namespace,
) -> dict:
    budgets = {t: args.steps_per_task[t] for t in tasks}
    common = math.gcd(*budgets.values())  # whole round-robin cycles: exact steps per task
    training = kgmm.TrainingArguments(
        output_dir=str(args.out / name),
        max_steps=sum(budgets.values()),
        batch_size={t: (QUICK_BATCH_SIZES if args.quick else BATCH_SIZES)[t] for t in tasks},
        learning_rate=args.learning_rate,
        learning_rates=LEARNING_RATES,
        warmup_ratio=0.06,
        bf16="auto",
        group_by_length=True,
        task_sampling="round_robin",
        round_robin_shares={t: n // common for t, n in budgets.items()},
        save_total_limit=1,
        logging_steps=10,
        seed=args.seed,
        progress_bar=not args.quick,
    )
    trainer = kgmm.Trainer(model, {t: train[t] for t in tasks}, None, training)
    start = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - start
    metrics = {}
    for task in tasks:
        metrics.update(evaluate_task(model, task, test[task], batch_size=128, bf16="auto"))
        metrics.pop(f"{task}/loss")
    if "mt" in tasks:
        outputs = model.predict(test["mt"], "mt", batch_size=128)  # bf16 on bf16 hardware
        references = [s["target"] for s in test["mt"]]
        metrics["mt/tokenized_bleu"] = tokenized_bleu(outputs, references).score
    return {
        "name": name,
        "tasks": list(tasks),
        "steps": sum(budgets.values()),
        "steps_per_task": budgets,
        "train_seconds": seconds,
        "parameters": parameter_count(model),
        "metrics": metrics,
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    train, test, kg, rec = load_tasks(args)
    tokenizer = train_target_tokenizer(
        (s["target"] for s in train["mt"]), 1000 if args.quick else 8000
    )
    # --quick: seeded random entity vectors instead of MiniLM over ~17k entity descriptions.
    embeddings = None if args.quick else kgmm.EntityEmbeddings.from_text(kg, progress=True)
    heads = head_specs(tokenizer, rec)
    print(
        f"joint: {', '.join(f'{t} {len(train[t])} train / {len(test[t])} test' for t in TASKS)};"
        f" merged graph {kg}"
    )
    runs, parameters = [], {}
    for name in args.runs:
        tasks = tuple(run_heads(name, heads))
        torch.manual_seed(args.seed)
        model = build_model(kg, embeddings, run_heads(name, heads), rec, args)
        runs.append(train_and_test(name, tasks, model, train, test, args))
        parameters[name] = runs[-1]["parameters"]
        # Each model's record is kept as soon as it is tested: a long run stopped later
        # keeps the models already done.
        write_results(args.out / name, runs[-1])
    for name in set(RUNS) - set(parameters):  # models not trained here: built only to count
        model = build_model(kg, embeddings, run_heads(name, heads), rec, args)
        parameters[name] = parameter_count(model)
    parameters = {name: parameters[name] for name in RUNS}
    single_total = sum(parameters[f"single-{t}"] for t in TASKS)
    print(
        f"parameters: one joint model {parameters['joint'] / 1e6:.1f}M, three single-task "
        f"models {single_total / 1e6:.1f}M ({parameters['joint'] / single_total:.2f}x)"
    )
    metric_names = [
        "qa/accuracy",
        "qa/macro_f1",
        "mt/bleu",
        "mt/tokenized_bleu",
        "rec/auc",
        "rec/f1",
    ]
    rows = [
        {
            "model": run["name"],
            "parameters (M)": run["parameters"] / 1e6,
            "steps": run["steps"],
            **{m: run["metrics"].get(m) for m in metric_names},
            "train s": run["train_seconds"],
        }
        for run in runs
    ]
    singles = [run for run in runs if run["name"].startswith("single")]
    if len(singles) == len(TASKS):
        rows.append(
            {
                "model": "three single-task models",
                "parameters (M)": single_total / 1e6,
                "steps": sum(r["steps"] for r in singles),
                "train s": sum(r["train_seconds"] for r in singles),
            }
        )
    columns = ["model", "parameters (M)", "steps", *metric_names, "train s"]
    print(format_table(rows, columns, float_format=".3f"))
    summary = {
        "tasks": {t: {"train": len(train[t]), "test": len(test[t])} for t in TASKS},
        "graph": {"entities": kg.num_entities, "triples": kg.num_triples},
        "parameters": parameters,
        "runs": runs,
    }
    return finish_run(args, summary, started)


if __name__ == "__main__":
    try:
        main()
    except kgmm.KGMMError as error:
        sys.exit(f"joint: error: {error}")
