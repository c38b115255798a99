"""Multi30k translation (English->German by default) with a bilingual lexicon as the graph.

Model: the MiniLM text encoder (fine-tuned) reads the source sentence. The lexicon graph
(``--lexicon`` files, ``source<TAB>target`` rows: Wiktionary and MUSE translations by
default) is linked from the source side only; each linked source word brings its target-
language translations as 1-hop neighbours. The fusion module attends from the source tokens
over those entities, and a Transformer decoder with a BPE vocabulary trained on the target
side of ``train`` cross-attends over the fused tokens and the entities. Training: label
smoothing, bf16 autocast on bf16 hardware, length-grouped batches, warmup then linear
decay, a budget of training minutes (evaluation not counted); the checkpoint with the best
validation BLEU (greedy decoding) is tested with beam search.

Reported per test split: sacreBLEU (cased, detokenised, with its signature), BLEU on
lower-cased tokenised text as the Multi30k papers report it (see
``kgmm.metrics.tokenized_bleu``), chrF, and lexicon-word accuracy: for each linked source word
whose lexicon translations include a word of the reference, whether the output has that word
(over all such words, and over rare ones, seen at most 5 times in the training source).
The validation BLEU against training minutes is the learning curve.

    python examples/translation.py                         # en->de, knowledge on, 90 minutes
    python examples/translation.py --ablation --minutes 30 # on, off and random, same seed
    python examples/translation.py --src en --tgt fr --lexicon en-fr.tsv
    python examples/translation.py --quick                 # smoke: ~2 min (bf16 CPU), ~4.5 (fp32)
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections import Counter
from pathlib import Path

import torch

import kgmm
from kgmm.data import lexicon_graph, load_parallel, parallel_splits, vocabulary
from kgmm.fusion import FusionConfig
from kgmm.heads import train_target_tokenizer
from kgmm.metrics import bleu, chrf, format_table, tokenized_bleu
from kgmm.training import TimeBudget, finish_run

REPO = Path(__file__).resolve().parents[1]
DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DEFAULT_DATA = DATASETS / "multi30k"
DEFAULT_LEXICONS = (
    DATASETS / "lexicon_en_de" / "german.txt",
    DATASETS / "lexicon_en_de" / "muse-en-de.tsv",
)
TASK = "mt"
KNOWLEDGE_MODES = ("on", "off", "random")
DEFAULT_TESTS = ("test_2016_flickr", "test_2017_flickr")
RARE_MAX_COUNT = 5
# Wu et al., ACL 2021 (Revisit-MMT), BLEU on lower-cased tokenised test2016 En->De; see the
# dataset's PROVENANCE.md.
PUBLISHED = {"Transformer-tiny (text only)": 41.02, "Gated Fusion (text + image)": 41.96}
# --quick: training pairs, validation and test sentences, epochs, batch size, BPE vocabulary.
QUICK_TRAIN, QUICK_EVAL, QUICK_EPOCHS, QUICK_BATCH, QUICK_VOCAB = 640, 100, 3, 32, 1000
# The encoder is pretrained; the decoder, fusion and gates start fresh and learn faster.
FRESH_LEARNING_RATES = {"*cross_attn_gate*": 1e-2, "fusion.*": 5e-4, "heads.*": 5e-4}
_WORD = re.compile(r"\w+")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--data-dir",
        type=Path,
        default=DEFAULT_DATA,
        help="folder with SPLIT.LANG[.gz] files (or raw/SPLIT.LANG[.gz])",
    )
    parser.add_argument("--src", default="en", help="source language (file suffix)")
    parser.add_argument("--tgt", default="de", help="target language (file suffix)")
    parser.add_argument(
        "--lexicon",
        type=Path,
        action="append",
        help="two-column source<TAB>target TSV; repeat for several (default: the en-de pair)",
    )
    parser.add_argument("--train-split", default="train")
    parser.add_argument("--valid-split", default="val")
    parser.add_argument(
        "--test-splits", nargs="+", default=None, help=f"default: {' '.join(DEFAULT_TESTS)}"
    )
    parser.add_argument("--out", type=Path, default=REPO / "runs" / "translation")
    parser.add_argument("--knowledge", choices=KNOWLEDGE_MODES, default="on")
    parser.add_argument(
        "--ablation", action="store_true", help="knowledge on, off and random (same seed)"
    )
    parser.add_argument("--quick", action="store_true", help="small slice, for a smoke test")
    parser.add_argument("--minutes", type=float, default=90.0, help="training-time budget")
    parser.add_argument("--epochs", type=float, default=8.0, help="at most (sets the schedule)")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--learning-rate", type=float, default=5e-5, help="of the encoder")
    parser.add_argument("--warmup-steps", type=int, default=300)
    parser.add_argument("--eval-steps", type=int, default=400, help="validate every N steps")
    parser.add_argument(
        "--stop-after-steps",
        type=int,
        default=None,
        help="end training after N steps, schedule unchanged (step-matched ablations)",
    )
    parser.add_argument("--vocab-size", type=int, default=8000, help="target BPE vocabulary")
    parser.add_argument("--decoder-layers", type=int, default=3)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--max-entities", type=int, default=64)
    parser.add_argument("--beam-size", type=int, default=5, help="for the test splits")
    parser.add_argument("--freeze-encoder", action="store_true")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_data(args: argparse.Namespace) -> tuple[list[dict], list[dict], dict[str, list[dict]]]:
    """``(train, valid, {test split: samples})``; ``--quick`` keeps a slice of each."""
    if not args.data_dir.is_dir():
        raise kgmm.DataError(f"{args.data_dir}: parallel-corpus folder not found (--data-dir)")
    names = args.test_splits or [
        s for s in DEFAULT_TESTS if s in parallel_splits(args.data_dir, args.src, args.tgt)
    ]
    if not names:
        raise kgmm.DataError(
            f"{args.data_dir}: none of the test splits {list(DEFAULT_TESTS)} exists for "
            f"{args.src}-{args.tgt}; pass --test-splits (found: "
            f"{parallel_splits(args.data_dir, args.src, args.tgt)})"
        )

    def load(split: str) -> list[dict]:
        return load_parallel(args.data_dir, split, args.src, args.tgt)

    train, valid = load(args.train_split), load(args.valid_split)
    tests = {name: load(name) for name in names}
    if args.quick:
        train, valid = train[:QUICK_TRAIN], valid[:QUICK_EVAL]
        tests = {name: samples[:QUICK_EVAL] for name, samples in list(tests.items())[:1]}
    return train, valid, tests


def build_model(
    kg: kgmm.KnowledgeGraph,
    embeddings: kgmm.EntityEmbeddings | None,
    tokenizer,
    knowledge: str,
    args: argparse.Namespace,
) -> kgmm.FusedModel:
    """``embeddings=None``: knowledge off defers embedding the lexicon entries until the
    knowledge is turned on, which an off run never does; ``--quick`` uses random vectors."""
    config = kgmm.FusedConfig(
        text={"max_length": 64, "freeze": args.freeze_encoder},
        fusion=FusionConfig(
            d_model=384, num_heads=6, num_layers=1, dropout=args.dropout, knowledge=knowledge
        ),
        heads={
            TASK: {
                "type": "translation",
                "tokenizer": tokenizer,
                "num_layers": args.decoder_layers,
                "num_heads": 6,
                "ffn_dim": 1024,
                "dropout": args.dropout,
                "max_length": 128,
                "beam_size": 1,  # greedy while validating; the test uses --beam-size
            }
        },
        linking={"hops": 1, "max_entities": args.max_entities, "types": [args.src]},
        entity_embeddings={"source": "random", "dim": 384} if args.quick else {},
        seed=args.seed,
    )
    return kgmm.FusedModel(config, kg=kg, entity_embeddings=embeddings)


class StopAfterSteps(kgmm.TrainerCallback):
    """End training after ``steps`` optimizer steps without changing the schedule."""

    def __init__(self, steps: int) -> None:
        self.steps = steps

    def on_step_end(self, trainer: kgmm.Trainer, step: int, logs: dict) -> None:
        if step >= self.steps:
            trainer.should_stop = True


def lexicon_accuracy(
    kg: kgmm.KnowledgeGraph,
    linker: kgmm.EntityLinker,
    tgt: str,
    samples: list[dict],
    hypotheses: list[str],
    source_counts: Counter,
) -> dict[str, float | int]:
    """Share of expected lexicon translations (those in the reference) that the output has."""
    found = {"all": [0, 0], "rare": [0, 0]}
    for sample, hypothesis in zip(samples, hypotheses):
        reference = set(_WORD.findall(sample["target"].lower()))
        produced = set(_WORD.findall(hypothesis.lower()))
        for mention in linker.link(sample["text"]):
            translations = {
                kg.entity(n).name.lower()
                for n in kg.neighbors([mention.entity_id], hops=1)
                if kg.entity(n).type == tgt
            }
            expected = translations & reference
            if not expected:
                continue
            words = _WORD.findall(sample["text"][mention.start : mention.end].lower())
            kinds = ["all"] + (
                ["rare"] if max(source_counts[w] for w in words) <= RARE_MAX_COUNT else []
            )
            for kind in kinds:
                found[kind][0] += bool(expected & produced)
                found[kind][1] += 1
    return {
        **{
            f"{kind}_accuracy": hit / total if total else float("nan")
            for kind, (hit, total) in found.items()
        },
        **{f"{kind}_words": total for kind, (_, total) in found.items()},
    }


def train_and_test(
    kg: kgmm.KnowledgeGraph,
    embeddings: kgmm.EntityEmbeddings | None,
    tokenizer,
    knowledge: str,
    data: tuple[list[dict], list[dict], dict[str, list[dict]]],
    args: argparse.Namespace,
) -> dict:
    train, valid, tests = data
    torch.manual_seed(args.seed)
    model = build_model(kg, embeddings, tokenizer, knowledge, args)
    output_dir = args.out / f"knowledge-{knowledge}"
    budget = TimeBudget(args.minutes * 60)
    training = kgmm.TrainingArguments(
        output_dir=str(output_dir),
        num_epochs=QUICK_EPOCHS if args.quick else args.epochs,
        batch_size=QUICK_BATCH if args.quick else args.batch_size,
        eval_batch_size=128,
        learning_rate=args.learning_rate,
        learning_rates=FRESH_LEARNING_RATES,
        warmup_steps=min(args.warmup_steps, 10) if args.quick else args.warmup_steps,
        bf16="auto",
        group_by_length=True,
        eval_steps=0 if args.quick else args.eval_steps,
        save_total_limit=1,
        metric_for_best_model=f"{TASK}/bleu",
        seed=args.seed,
        progress_bar=not args.quick,
    )
    callbacks = [budget]
    if args.stop_after_steps:
        callbacks.append(StopAfterSteps(args.stop_after_steps))
    trainer = kgmm.Trainer(model, {TASK: train}, {TASK: valid}, training, callbacks)
    result = trainer.train()
    model = kgmm.FusedModel.from_pretrained(output_dir / "best")
    model.heads[TASK].beam_size = args.beam_size
    linker = kgmm.EntityLinker(kg, types=[args.src])
    source_counts = Counter(w for s in train for w in _WORD.findall(s["text"].lower()))
    scores = {}
    for name, samples in tests.items():
        start = time.perf_counter()
        hypotheses = model.predict(samples, task=TASK, batch_size=64)  # bf16 on bf16 hardware
        seconds = time.perf_counter() - start
        references = [s["target"] for s in samples]
        sacre = bleu(hypotheses, references)
        scores[name] = {
            "sacrebleu": sacre.score,
            "sacrebleu_signature": sacre.signature,
            "sacrebleu_details": sacre.details,
            "tokenized_bleu": tokenized_bleu(hypotheses, references).score,
            "chrf": chrf(hypotheses, references).score,
            "lexicon_words": lexicon_accuracy(
                kg, linker, args.tgt, samples, hypotheses, source_counts
            ),
            "decode_seconds": seconds,
            "examples": [
                {"source": s["text"], "reference": s["target"], "output": h}
                for s, h in list(zip(samples, hypotheses))[:5]
            ],
        }
        (output_dir / f"{name}.{args.tgt}.txt").write_text("\n".join(hypotheses) + "\n")
    return {
        "knowledge": knowledge,
        "tests": scores,
        "valid_bleu_greedy": result.best_metric,
        "best_step": result.best_step,
        "steps": result.step,
        "stopped_by_budget": budget.exhausted,
        "training_minutes": trainer.training_seconds / 60,
        "curve": [
            {"training_minutes": seconds / 60, "step": step, "valid_bleu": m[f"{TASK}/bleu"]}
            for seconds, step, m in budget.curve
        ],
        "fusion_gate": model.fusion.gate_values()[0],
    }


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    data = load_data(args)
    train, valid, tests = data
    lexicons = args.lexicon or list(DEFAULT_LEXICONS)
    every_source = [s["text"] for part in (train, valid, *tests.values()) for s in part]
    kg = lexicon_graph(lexicons, args.src, args.tgt, vocabulary(every_source))
    tokenizer = train_target_tokenizer(
        (s["target"] for s in train), QUICK_VOCAB if args.quick else args.vocab_size
    )
    print(
        f"Multi30k {args.src}->{args.tgt}: {len(train)} train, {len(valid)} valid, "
        + ", ".join(f"{len(v)} {k}" for k, v in tests.items())
        + f"; lexicon graph {kg} (rows whose {args.src} side occurs in the sources); "
        f"target BPE vocabulary {tokenizer.get_vocab_size()}"
    )
    modes = KNOWLEDGE_MODES if args.ablation else (args.knowledge,)
    # --quick: seeded random entity vectors instead of MiniLM over every lexicon entry.
    deferred = args.quick or modes == ("off",)
    embeddings = None if deferred else kgmm.EntityEmbeddings.from_text(kg, progress=True)
    runs = [train_and_test(kg, embeddings, tokenizer, mode, data, args) for mode in modes]
    rows = []
    for run in runs:
        for name, score in run["tests"].items():
            words = score["lexicon_words"]
            rows.append(
                {
                    "model": f"MiniLM + decoder, KG {run['knowledge']}",
                    "test": name,
                    "BLEU tok": score["tokenized_bleu"],
                    "sacreBLEU": score["sacrebleu"],
                    "chrF": score["chrf"],
                    "lexicon acc": 100 * words["all_accuracy"],
                    "rare acc": 100 * words["rare_accuracy"],
                    "train min": run["training_minutes"],
                }
            )
    rows += [
        {"model": f"{k} (published)", "test": "test_2016_flickr", "BLEU tok": v}
        for k, v in PUBLISHED.items()
    ]
    columns = [
        "model",
        "test",
        "BLEU tok",
        "sacreBLEU",
        "chrF",
        "lexicon acc",
        "rare acc",
        "train min",
    ]
    print(format_table(rows, columns, float_format=".2f"))
    print("sacreBLEU signature:", runs[0]["tests"][next(iter(tests))]["sacrebleu_signature"])
    for run in runs:
        curve = ", ".join(
            f"{p['training_minutes']:.0f} min {p['valid_bleu']:.1f}" for p in run["curve"]
        )
        print(f"validation BLEU (greedy) against training time, KG {run['knowledge']}: {curve}")
    summary = {
        "dataset": "multi30k",
        "pair": f"{args.src}-{args.tgt}",
        "train_pairs": len(train),
        "valid_pairs": len(valid),
        "test_pairs": {k: len(v) for k, v in tests.items()},
        "lexicons": [str(p) for p in lexicons],
        "graph": {"entities": kg.num_entities, "triples": kg.num_triples},
        "runs": runs,
        "published_tokenized_bleu_test2016": PUBLISHED,
    }
    return finish_run(args, summary, started)


if __name__ == "__main__":
    try:
        main()
    except kgmm.KGMMError as error:
        sys.exit(f"translation: error: {error}")
