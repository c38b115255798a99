"""Spoken, written and known: yes/no questions about a spoken digit and a handwritten one.

Data: the Free Spoken Digit Dataset (``fsdd``: 3,000 8 kHz WAV recordings of the digits 0-9,
official split: recordings numbered 0-4 are the 300 test recordings) and the UCI 8x8
handwritten digits as scikit-learn ships them (``digits_uci_sklearn``: 1,797 images; split
here once, stratified by digit, 70/30 with a fixed seed ``IMAGE_SPLIT_SEED`` that does not
change with ``--seed``).

Task: each sample is a question (text), a recording (audio) and an image, answered yes/no:

* ``successor``:   "Is the spoken number the successor of the written number?"
* ``predecessor``: "Is the spoken number the predecessor of the written number?"
* ``same_parity``: "Is the sum of the spoken and written numbers even?"

The answer needs the question (the three disagree on the same two numbers), the spoken digit
and the written digit. Generation (seeded by ``--seed``): every recording of a split gives
``PAIRS_PER_RECORDING`` samples; the answers of a split are an exactly balanced, shuffled
list of yes and no; for each sample a question is drawn among those that can have that
answer for the spoken digit (nothing is the successor of 0 or the predecessor of 9), then the
written digit uniformly among those that give that answer, then an image of that digit.
Training samples use training recordings and images only, test samples test ones only.
Because of the two edge cases, one number and the question alone predict slightly better
than chance; for each single-number subset the script prints the test accuracy of the best
such rule (the majority answer per question and digit in the training samples).

Knowledge: a graph of number facts generated from arithmetic (``number_facts_graph``):
entities ``0``..``9`` named ``zero``..``nine``, ``even``/``odd``, ``prime``/``composite``;
relations ``successor_of``, ``predecessor_of``, ``has_parity``, ``has_primality``. The
question's words ("even") link by name; the image and the audio retrieve their top-k
entities by similarity between their pooled vector and the entity embeddings, so the model
can look the two numbers up in the graph. Entity vectors are RotatE embeddings of the graph
(``--entity-embeddings structure``) or random vectors trained with the model (``random``).

Training: each question model is trained jointly (``kgmm.Trainer``, several tasks) on the
questions and, for each of its audio and image encoders, a digit-recognition head
(``spoken_digit``, ``written_digit``) on the same split's recordings or images, so the
encoders get direct digit supervision. Encoders start from random weights: a spectrogram
transformer on 8 kHz log-Mel frames and a resnet18 on the 8x8 images upsampled to 32x32.

Reported: test accuracy of the tri-modal model with knowledge on/off/random (``--ablation``)
or one mode (``--knowledge``), of the modality subsets text+image, text+audio and
image+audio (knowledge as chosen), and of the audio and image encoders alone on digit
recognition (classification heads, no graph). ``--quick`` trains on a small slice.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import torch
from sklearn.model_selection import train_test_split

import kgmm
from kgmm.data.digits import load_digit_images, load_fsdd
from kgmm.fusion import FusionConfig
from kgmm.metrics import confidence_interval, format_table
from kgmm.training import finish_run

NAME = "spoken_written_digits"
REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA_DIR = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FSDD_FOLDER = "fsdd"
IMAGES_FILE = Path("digits_uci_sklearn") / "digits.csv.gz"
TASK = "digit_question"
ANSWERS = ("no", "yes")
NUMBER_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
QUESTIONS = {
    "successor": "Is the spoken number the successor of the written number?",
    "predecessor": "Is the spoken number the predecessor of the written number?",
    "same_parity": "Is the sum of the spoken and written numbers even?",
}
DIGIT_TASKS = {"audio": "spoken_digit", "image": "written_digit"}
DIGITS = [str(d) for d in range(10)]
RUNS = ("questions", "subsets", "recognition")
SUBSETS = (("text", "image"), ("text", "audio"), ("image", "audio"))
PAIRS_PER_RECORDING = 1
IMAGE_SPLIT_SEED = 0
IMAGE_TEST_FRACTION = 0.3
IMAGE_ENCODER = {"backbone": "resnet18", "image_size": 32, "random_init": True}
AUDIO_ENCODER = {"kind": "spectrogram", "sample_rate": 8000, "n_mels": 40, "d_model": 128}
TEXT_ENCODER = {"freeze": True, "max_length": 32}
QUICK_TRAIN, QUICK_TEST = 400, 100
QUICK_EPOCHS, FULL_EPOCHS = 1, 4
QUICK_RECOGNITION_EPOCHS, FULL_RECOGNITION_EPOCHS = 8, 10
PUBLISHED = {
    "spoken_digit_accuracy": (0.97, "sound-mnist MFCC+CNN, informal, older 3-speaker FSDD"),
    "written_digit_accuracy": (0.97, "scikit-learn SVC example, approx., its own 50/50 split"),
}


# ---------------------------------------------------------------------------- facts and samples
def is_fact(question: str, spoken: int, written: int) -> bool:
    """The arithmetic truth of ``question`` about the two numbers."""
    if question == "successor":
        return spoken == written + 1
    if question == "predecessor":
        return spoken == written - 1
    return (spoken + written) % 2 == 0


def number_facts_graph() -> kgmm.KnowledgeGraph:
    """Successor, predecessor, parity and primality of 0-9, generated from arithmetic."""
    digits = range(10)
    triples = [(str(n + 1), "successor_of", str(n)) for n in range(9)]
    triples += [(str(n), "predecessor_of", str(n + 1)) for n in range(9)]
    triples += [(str(n), "has_parity", "even" if n % 2 == 0 else "odd") for n in digits]
    triples += [
        (str(n), "has_primality", "prime" if all(n % d for d in range(2, n)) else "composite")
        for n in digits
        if n >= 2
    ]
    entities = [
        {"entity": str(n), "name": NUMBER_NAMES[n], "aliases": [str(n)], "type": "number"}
        for n in digits
    ]
    entities += [
        {"entity": key, "name": key, "type": "property"}
        for key in ("even", "odd", "prime", "composite")
    ]
    return kgmm.KnowledgeGraph.from_triples(triples, entities)


def question_samples(
    recordings: list[dict], images: np.ndarray, labels: np.ndarray, seed: int
) -> list[dict]:
    """Balanced yes/no questions pairing each recording with images (see the module doc)."""
    rng = random.Random(seed)
    by_digit = defaultdict(list)
    for index, label in enumerate(labels):
        by_digit[int(label)].append(index)
    count = len(recordings) * PAIRS_PER_RECORDING
    answers = [ANSWERS[i % 2] for i in range(count)]
    rng.shuffle(answers)
    samples = []
    for number, answer in enumerate(answers):
        recording = recordings[number // PAIRS_PER_RECORDING]
        spoken, truth = recording["digit"], answer == "yes"
        options = {q: [w for w in by_digit if is_fact(q, spoken, w) == truth] for q in QUESTIONS}
        question = rng.choice(sorted(q for q, written in options.items() if written))
        written = rng.choice(sorted(options[question]))
        image = rng.choice(by_digit[written])
        samples.append(
            {
                "text": QUESTIONS[question],
                "image": images[image],
                "audio": recording["audio"],
                "label": answer,
                "question": question,
                "spoken": spoken,
                "written": written,
            }
        )
    return samples


def single_number_baseline(train: list[dict], test: list[dict], number: str) -> float:
    """Test accuracy of the best rule that sees only the question and ``number`` (``spoken``
    or ``written``): the majority answer of each (question, digit) among training samples."""
    groups = defaultdict(Counter)
    for sample in train:
        groups[sample["question"], sample[number]][sample["label"]] += 1
    majority = {key: counts.most_common(1)[0][0] for key, counts in groups.items()}
    hits = sum(majority.get((s["question"], s[number])) == s["label"] for s in test)
    return hits / len(test)


def keep(samples: list[dict], modalities: tuple[str, ...]) -> list[dict]:
    """The samples with only ``modalities`` (the others removed)."""
    dropped = {"text", "image", "audio"} - set(modalities)
    return [{k: v for k, v in s.items() if k not in dropped} for s in samples]


# ---------------------------------------------------------------------------- models
def question_model(
    kg: kgmm.KnowledgeGraph,
    modalities: tuple[str, ...],
    knowledge: str,
    embeddings: kgmm.EntityEmbeddings | None,
    seed: int,
) -> kgmm.FusedModel:
    config = kgmm.FusedConfig(
        text=TEXT_ENCODER if "text" in modalities else None,
        image=IMAGE_ENCODER if "image" in modalities else None,
        audio=AUDIO_ENCODER if "audio" in modalities else None,
        fusion=FusionConfig(
            d_model=128, num_heads=4, num_layers=2, knowledge=knowledge, retrieval_top_k=3
        ),
        heads={
            TASK: {"type": "classification", "labels": list(ANSWERS)},
            **{
                DIGIT_TASKS[m]: {"type": "classification", "labels": DIGITS}
                for m in modalities
                if m in DIGIT_TASKS
            },
        },
        linking={"hops": 1, "max_entities": 16},
        entity_embeddings=(
            {"source": "structure"}
            if embeddings is not None
            else {"source": "random", "trainable": True, "dim": 64}
        ),
        seed=seed,
    )
    return kgmm.FusedModel(config, kg=kg, entity_embeddings=embeddings)


def recognition_model(modality: str, task: str, seed: int) -> kgmm.FusedModel:
    """One encoder and a classification head, no graph: digit recognition from one modality."""
    config = kgmm.FusedConfig(
        text=None,
        image=IMAGE_ENCODER if modality == "image" else None,
        audio=AUDIO_ENCODER if modality == "audio" else None,
        fusion=FusionConfig(d_model=128, num_heads=4, num_layers=1, knowledge="off"),
        heads={task: {"type": "classification", "labels": DIGITS}},
        seed=seed,
    )
    return kgmm.FusedModel(config)


def train_and_test(
    model: kgmm.FusedModel,
    train: dict[str, list[dict]],
    test: dict[str, list[dict]],
    epochs: float,
    args: argparse.Namespace,
    run: str,
) -> tuple[dict[str, float], float]:
    """Train on every task of ``train`` at once; return the test metrics and the seconds."""
    start = time.perf_counter()
    training = kgmm.TrainingArguments(
        output_dir=str(Path(args.out) / run),
        num_epochs=epochs,
        batch_size=32,
        learning_rate=args.learning_rate,
        warmup_ratio=0.05,
        lr_scheduler="cosine",
        bf16="auto",
        seed=args.seed,
        logging_steps=20,
        progress_bar=args.progress,
    )
    trainer = kgmm.Trainer(model, train, test, training)
    trainer.train()
    return trainer.evaluate(), time.perf_counter() - start


# ---------------------------------------------------------------------------- the run
def load_data(data_dir: Path, quick: bool, seed: int) -> dict:
    """Question samples and digit-recognition samples of both modalities, train and test."""
    recordings = load_fsdd(data_dir / FSDD_FOLDER)
    images, labels = load_digit_images(data_dir / IMAGES_FILE)
    image_split = train_test_split(
        np.arange(len(labels)),
        test_size=IMAGE_TEST_FRACTION,
        random_state=IMAGE_SPLIT_SEED,
        stratify=labels,
    )
    if quick:
        sizes = (QUICK_TRAIN, QUICK_TEST)
        recordings = [random.Random(seed).sample(list(p), n) for p, n in zip(recordings, sizes)]
        image_split = [random.Random(seed).sample(list(p), n) for p, n in zip(image_split, sizes)]
    data: dict[str, tuple[list[dict], list[dict]]] = {
        TASK: tuple(
            question_samples(part, images[index], labels[index], seed + offset)
            for offset, (part, index) in enumerate(zip(recordings, image_split))
        ),
        "spoken_digit": tuple(
            [{"audio": r["audio"], "label": str(r["digit"])} for r in part] for part in recordings
        ),
        "written_digit": tuple(
            [{"image": images[i], "label": str(labels[i])} for i in index] for index in image_split
        ),
    }
    return data


def main(argv: list[str] | None = None) -> dict:
    args = parse_args(argv)
    started = time.perf_counter()
    torch.manual_seed(args.seed)
    data = load_data(Path(args.data_dir), args.quick, args.seed)
    train, test = data[TASK]
    kg = number_facts_graph()
    embeddings = (
        kgmm.train_kg_embeddings(
            kg, model="rotate", dim=32, epochs=300, seed=args.seed, progress=False
        )
        if args.entity_embeddings == "structure"
        else None
    )
    print(
        f"{kg}; {len(train)} training and {len(test)} test questions; "
        f"entity embeddings: {args.entity_embeddings}"
    )
    epochs = args.epochs or (QUICK_EPOCHS if args.quick else FULL_EPOCHS)
    rows, results = [], {}

    def question_run(modalities: tuple[str, ...], knowledge: str) -> None:
        name = "+".join(modalities)
        tasks = [TASK, *(DIGIT_TASKS[m] for m in modalities if m in DIGIT_TASKS)]
        model = question_model(kg, modalities, knowledge, embeddings, args.seed)
        metrics, seconds = train_and_test(
            model,
            {t: keep(data[t][0], modalities) for t in tasks},
            {t: keep(data[t][1], modalities) for t in tasks},
            epochs,
            args,
            f"{name}_{knowledge}",
        )
        accuracy = metrics[f"{TASK}/accuracy"]
        low, high = confidence_interval(round(accuracy * len(test)), len(test))
        baseline = (
            None
            if {"image", "audio"} <= set(modalities)
            else single_number_baseline(
                train, test, "written" if "image" in modalities else "spoken"
            )
        )
        results[f"{name}/knowledge_{knowledge}"] = accuracy
        rows.append(
            {
                "modalities": name,
                "knowledge": knowledge,
                "accuracy": accuracy,
                "95% CI": f"{low:.3f}-{high:.3f}",
                "one-number rule": baseline,
                "spoken digit": metrics.get("spoken_digit/accuracy"),
                "written digit": metrics.get("written_digit/accuracy"),
                "gate": model.fusion.gate_values()[-1],
                "seconds": round(seconds),
            }
        )
        print(format_table(rows[-1:], list(rows[-1])))

    modes = ("on", "off", "random") if args.ablation else (args.knowledge,)
    if "questions" in args.runs:
        for knowledge in modes:
            question_run(("text", "image", "audio"), knowledge)
    if "subsets" in args.runs and not args.quick:
        for modalities in SUBSETS:
            question_run(modalities, args.knowledge)
    recognition_epochs = args.recognition_epochs or (
        QUICK_RECOGNITION_EPOCHS if args.quick else FULL_RECOGNITION_EPOCHS
    )
    if "recognition" in args.runs:
        for modality, task in DIGIT_TASKS.items():
            if args.quick and modality != "audio":  # keep --quick short: audio only
                continue
            model = recognition_model(modality, task, args.seed)
            metrics, seconds = train_and_test(
                model,
                {task: data[task][0]},
                {task: data[task][1]},
                recognition_epochs,
                args,
                f"{task}_alone",
            )
            results[f"{task}_accuracy"] = metrics[f"{task}/accuracy"]
            print(
                f"{modality} encoder alone: {task} accuracy {metrics[f'{task}/accuracy']:.4f} "
                f"on {len(data[task][1])} ({seconds:.0f} s)"
            )

    if rows:
        print()
        print(format_table(rows, list(rows[0])))
    chance = max(Counter(s["label"] for s in test).values()) / len(test)
    summary = {
        "metrics": results,
        "published": {k: {"value": v, "source": s} for k, (v, s) in PUBLISHED.items()},
        "question_table": rows,
        "majority_baseline": chance,
        "test_questions": len(test),
        "train_questions": len(train),
        "entity_embeddings": args.entity_embeddings,
        "quick": args.quick,
        "epochs": epochs,
        "recognition_epochs": recognition_epochs,
    }
    print(f"majority baseline {chance:.3f}")
    return finish_run(args, summary, started)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--data-dir",
        default=str(DEFAULT_DATA_DIR),
        help="folder holding fsdd/ and digits_uci_sklearn/",
    )
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "runs" / NAME)
    parser.add_argument("--quick", action="store_true", help="small slice, short training")
    parser.add_argument("--knowledge", choices=("on", "off", "random"), default="on")
    parser.add_argument("--ablation", action="store_true", help="knowledge on, off and random")
    parser.add_argument("--entity-embeddings", choices=("structure", "random"), default="structure")
    parser.add_argument(
        "--runs",
        nargs="+",
        choices=RUNS,
        default=list(RUNS),
        help="questions: text+image+audio; subsets: the two-modality models "
        "(not in --quick); recognition: each encoder alone on digits",
    )
    parser.add_argument("--epochs", type=float, default=None)
    parser.add_argument("--recognition-epochs", type=float, default=None)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--progress", action="store_true", help="show progress bars")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        main()
    except kgmm.KGMMError as error:
        sys.exit(f"{NAME}: error: {error}")
