"""Fine-tuning speed on BANKING77: kgmm's Trainer against two peers, in one run.

Contenders (same offline MiniLM backbone, same data):

* ``peer1_tutorial``: the tutorials' recipe: ``BertTokenizer(padding="max_length",
  max_length=128)`` once up front, fp32, a plain PyTorch loop, AdamW 2e-5, batch 16. It is
  slow, so it runs only the throughput phase (no accuracy);
* ``peer2_hf_trainer``: ``AutoModelForSequenceClassification`` + ``DataCollatorWithPadding``
  + ``transformers.Trainer`` (``bf16=True`` where the device has bf16 matmul hardware, as
  kgmm's ``bf16="auto"``, else fp32; ``use_cpu`` on CPU), batch 32, HF's default schedule
  (AdamW 5e-5, linear decay);
* ``kgmm_text``: ``kgmm.Trainer`` on a ``FusedModel`` without a graph (MiniLM with its token
  embeddings fixed, ``freeze_embeddings=True``, + one fusion layer + intent head), the shared
  BANKING77 schedule of ``banking77_setup.training_arguments`` (``bf16="auto"``, length-grouped
  batches, fused AdamW) with ``lane_dropout=True``, batch 32;
* ``kgmm_kg``: the same with knowledge fusion on over ``graphs/banking.tsv`` (3 hops, at most
  64 entities per sample, entity vectors from MiniLM over the entity names).

Two phases:

1. throughput: ``--repeats`` rounds; each round runs every contender (peer 1 in the first
   round only: it is an order of magnitude slower) in turn for
   ``--warmup-steps`` untimed and ``--timed-steps`` timed optimizer steps on the same
   seeded samples (alternating contenders, so load on a shared machine hits all alike);
   samples/s is the median over rounds. With ``--turns`` all contenders but peer 1 instead
   train in threads of one process taking one optimizer step each in turn (:class:`Turns`),
   and each one's ratio to peer 2 is paired: summed step times over the same turns, with a
   90% bootstrap interval. Model FLOP utilisation (MFU) is FLOPs per sample
   (``FlopCounterMode`` over the forward and backward passes of an epoch of batches drawn
   as that contender draws them, padding included: peer 2's random, kgmm's length-grouped; peer 1
   pads every batch to 128) times samples/s, divided by the machine's matmul peak (a
   2048x2048 ``torch.matmul`` loop measured in this run, before and after; the best), in
   bf16 where the device has bf16 matmul hardware and in fp32 elsewhere. The rate MiniLM's
   own linear matmuls reach at the batches' padded token count is measured too, so a
   low MFU can be told from matmuls too small for the peak;
2. accuracy: peer 2 and both kgmm models train ``--epochs`` epochs (or ``--max-steps``) on
   the training set and are scored on the test set; that run's own samples/s is reported too.
   ``--accuracy-contenders`` picks some of them, so two processes can share the work.

``--levers`` adds kgmm variants to the throughput phase, each changing one thing of kgmm's
recipe (trained token embeddings, ``compile=True`` (the encoder under ``torch.compile``,
whose compilation falls in the warm-up steps), torch's dropout masks instead of
``LaneDropout``'s, fp32, no length grouping, bf16 weights (``model.to(torch.bfloat16)``, no
fp32 copy), eager attention instead of SDPA, a data-loader worker, 2 threads; ``kg-`` levers
change kgmm_kg instead of kgmm_text), the same
worker and 2-thread settings for peer 2 (``dataloader_num_workers=1``; 2 torch threads), so
a lever that only uses an idle core is compared with the peer given that core too, and
times AdamW's fused against its foreach step.

    python benchmarks/train_speed.py                                   # full run (see README)
    python benchmarks/train_speed.py --max-steps 250 --repeats 3       # medium run
    python benchmarks/train_speed.py --turns --no-accuracy --levers    # paired throughput
    python benchmarks/train_speed.py --quick                           # CI smoke run
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import random
import statistics
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import transformers
from banking77_setup import (
    DEFAULT_DATA,
    GRAPH,
    TASK,
    training_arguments,
    write_results,
)
from speed_measures import (
    counted_flops,
    encoder_layer_shapes,
    matmul_peak,
    matmul_rate,
    synchronize,
)
from torch.utils._pytree import tree_leaves
from torch.utils.data import DataLoader, TensorDataset

import kgmm
from kgmm.data import text_lengths
from kgmm.data.batch import move_to
from kgmm.data.intents import few_shot, load_intent_csv
from kgmm.device import autocast
from kgmm.fusion import FusionConfig
from kgmm.metrics import format_table
from kgmm.resources import default_text_model_path
from kgmm.training import TrainerCallback, native_bf16
from kgmm.training.batch_sampler import EpochBatchSampler

PEERS = ("peer1_tutorial", "peer2_hf_trainer")
CONTENDERS = (*PEERS, "kgmm_text", "kgmm_kg")
SCORED = CONTENDERS[1:]  # peer 1 is too slow for a full accuracy run
LINKING = {"hops": 3, "max_entities": 64}  # 61 entities per utterance on average
MAX_LENGTH = 128  # no BANKING77 utterance is longer (the longest has 98 word pieces)
PEER1_BATCH, PEER1_LENGTH, PEER1_LR = 16, 128, 2e-5
PEER2_LR = 5e-5
BATCH = 32


# ---------------------------------------------------------------- data
def load_data(
    data_dir: Path, train_samples: int | None, test_samples: int | None, quick: bool, seed: int
) -> tuple[list[dict], list[dict], list[str]]:
    """BANKING77 train and test (``quick``: 5 intents, 16 training and 8 test utterances each);
    ``train_samples``/``test_samples`` keep a seeded random slice."""
    if not (Path(data_dir) / "train.csv").is_file():
        raise kgmm.DataError(f"{data_dir}: no train.csv; pass --data-dir (BANKING77 folder)")
    train = load_intent_csv(Path(data_dir) / "train.csv")
    test = load_intent_csv(Path(data_dir) / "test.csv")
    if quick:
        kept = set(sorted({s["label"] for s in train})[:5])
        train = few_shot([s for s in train if s["label"] in kept], 16, seed)
        test = few_shot([s for s in test if s["label"] in kept], 8, seed)
    rng = random.Random(seed)
    train, test = rng.sample(train, len(train)), rng.sample(test, len(test))
    labels = sorted({s["label"] for s in train})
    return train[:train_samples], test[:test_samples], labels


def cycled(samples: list[dict], count: int) -> list[dict]:
    """The first ``count`` samples, repeating the list when it is shorter."""
    return [samples[i % len(samples)] for i in range(count)]


# ---------------------------------------------------------------- clocks
class StepClock:
    """Wall time at the end of every optimizer step."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        synchronize(self.device)
        self.times.append(time.perf_counter())

    def samples_per_s(self, warmup: int, batch_size: int) -> float:
        """Throughput over the steps after the first ``warmup`` (the first one at least)."""
        warmup = min(max(warmup, 1), len(self.times) - 1)
        return (len(self.times) - warmup) * batch_size / (self.times[-1] - self.times[warmup - 1])


class KgmmClock(StepClock, TrainerCallback):
    """A :class:`StepClock` for ``kgmm.Trainer``."""


class HFClock(StepClock, transformers.TrainerCallback):
    """A :class:`StepClock` for ``transformers.Trainer``."""


@dataclass
class Run:
    """One contender's training run: its throughput and, when scored, test accuracy."""

    samples_per_s: float
    accuracy: float | None = None
    extra: dict[str, Any] = field(default_factory=dict)


# ---------------------------------------------------------------- peer 1
def peer1_model(labels: list[str], device: torch.device) -> torch.nn.Module:
    torch.manual_seed(0)
    path = default_text_model_path()
    return transformers.AutoModelForSequenceClassification.from_pretrained(
        path, num_labels=len(labels)
    ).to(device)


def peer1_batches(samples: list[dict], labels: list[str]) -> DataLoader:
    """The tutorials' data: every text padded to 128 word pieces, tokenised once up front."""
    tokenizer = transformers.BertTokenizer.from_pretrained(default_text_model_path())
    encoded = tokenizer(
        [s["text"] for s in samples],
        padding="max_length",
        truncation=True,
        max_length=PEER1_LENGTH,
        return_tensors="pt",
    )
    targets = torch.tensor([labels.index(s["label"]) for s in samples])
    dataset = TensorDataset(encoded["input_ids"], encoded["attention_mask"], targets)
    return DataLoader(dataset, batch_size=PEER1_BATCH, shuffle=True)


def run_peer1(
    train: list[dict], labels: list[str], steps: int, warmup: int, device: torch.device
) -> Run:
    model = peer1_model(labels, device).train()
    loader = peer1_batches(cycled(train, (steps + warmup) * PEER1_BATCH), labels)
    optimizer = torch.optim.AdamW(model.parameters(), lr=PEER1_LR)
    times = []
    for input_ids, attention_mask, targets in loader:
        out = model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            labels=targets.to(device),
        )
        out.loss.backward()
        optimizer.step()
        optimizer.zero_grad()
        synchronize(device)
        times.append(time.perf_counter())
    clock = StepClock(device)
    clock.times = times
    return Run(clock.samples_per_s(warmup, PEER1_BATCH))


def peer1_flops_per_sample(train: list[dict], labels: list[str], device: torch.device) -> float:
    model = peer1_model(labels, device).train()
    input_ids, attention_mask, targets = next(iter(peer1_batches(train[:PEER1_BATCH], labels)))

    def step() -> None:
        model(
            input_ids=input_ids.to(device),
            attention_mask=attention_mask.to(device),
            labels=targets.to(device),
        ).loss.backward()

    return counted_flops(step) / len(targets)


# ---------------------------------------------------------------- peer 2
def peer2_dataset(samples: list[dict], labels: list[str], tokenizer: Any) -> list[dict]:
    """Tokenised once up front without padding, as ``dataset.map(tokenize)`` does."""
    encoded = tokenizer([s["text"] for s in samples], truncation=True, max_length=MAX_LENGTH)
    return [
        {"input_ids": ids, "attention_mask": mask, "labels": labels.index(s["label"])}
        for ids, mask, s in zip(encoded["input_ids"], encoded["attention_mask"], samples)
    ]


@dataclass
class Peer2Variant:
    """Peer 2 with ``dataloader_num_workers``, a thread count (``None``: the run's) and the
    Trainer's seed."""

    workers: int = 0
    threads: int | None = None
    seed: int = 0


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run the block with ``count`` torch threads (``None``: unchanged), then restore."""
    before = torch.get_num_threads()
    if count:
        torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def run_peer2(
    train: list[dict],
    test: list[dict] | None,
    labels: list[str],
    device: torch.device,
    warmup: int,
    epochs: float,
    max_steps: int,
    variant: Peer2Variant,
    callbacks: list[transformers.TrainerCallback] | None = None,
) -> Run:
    path = default_text_model_path()
    tokenizer = transformers.AutoTokenizer.from_pretrained(path)
    model = peer1_model(labels, device)
    clock = HFClock(device)
    with tempfile.TemporaryDirectory() as output_dir, torch_threads(variant.threads):
        args = transformers.TrainingArguments(
            output_dir=output_dir,
            per_device_train_batch_size=BATCH,
            per_device_eval_batch_size=128,
            num_train_epochs=epochs,
            max_steps=max_steps if max_steps > 0 else -1,
            learning_rate=PEER2_LR,
            bf16=native_bf16(device),
            use_cpu=device.type == "cpu",
            save_strategy="no",
            report_to="none",
            disable_tqdm=True,
            logging_strategy="no",
            dataloader_num_workers=variant.workers,
            seed=variant.seed,
        )
        trainer = transformers.Trainer(
            model=model,
            args=args,
            train_dataset=peer2_dataset(train, labels, tokenizer),
            data_collator=transformers.DataCollatorWithPadding(tokenizer),
            callbacks=[clock, *(callbacks or [])],
        )
        trainer.remove_callback(transformers.PrinterCallback)
        trainer.train()
        accuracy = None
        if test is not None:
            predicted = trainer.predict(peer2_dataset(test, labels, tokenizer))
            hits = predicted.predictions.argmax(-1) == predicted.label_ids
            accuracy = float(hits.mean())
    return Run(clock.samples_per_s(warmup, BATCH), accuracy)


def peer2_flops_per_sample(train: list[dict], labels: list[str], device: torch.device) -> float:
    """FLOPs per sample over an epoch of batches drawn as peer 2 draws them (random, each
    padded to its longest utterance)."""
    tokenizer = transformers.AutoTokenizer.from_pretrained(default_text_model_path())
    model = peer1_model(labels, device).train()
    collate = transformers.DataCollatorWithPadding(tokenizer)
    dataset = peer2_dataset(train, labels, tokenizer)
    order = random.Random(0).sample(range(len(train)), len(train))
    chunks = [order[start : start + BATCH] for start in range(0, len(order), BATCH)]
    batches = [dict(collate([dataset[i] for i in chunk])) for chunk in chunks]

    def step(batch: dict[str, Any]) -> None:
        with autocast(device, native_bf16(device)):
            loss = model(**move_to(batch, device)).loss
        loss.backward()

    return flops_per_sample(batches, len(train), step)


# ---------------------------------------------------------------- kgmm
def kgmm_model(labels: list[str], knowledge: bool, **text: Any) -> kgmm.FusedModel:
    """MiniLM + one fusion layer + intent head; with ``knowledge`` the banking graph too."""
    config = kgmm.FusedConfig(
        text={"max_length": MAX_LENGTH, **text},
        fusion=FusionConfig(d_model=384, num_heads=6, num_layers=1, dropout=0.1),
        heads={TASK: {"type": "classification", "labels": labels}},
        linking=LINKING,
        seed=0,
    )
    return kgmm.FusedModel(config, kg=kgmm.KnowledgeGraph.load(GRAPH) if knowledge else None)


# kgmm's recipe, on top of the shared BANKING77 schedule: the token embeddings stay fixed (on
# a CPU their dense gradient and AdamW update cost a text-only step ~30%; lever
# "train-embeddings"). The encoder stays eager (TrainingArguments' default): compiled,
# kgmm + KG was 7-9% slower in three paired runs and text-only 0.90-1.08x in four (levers
# "compile", "kg-compile"). Dropout masks come from 16-bit random lanes (LaneDropout: torch's
# CPU masks took 12-17% of a step's op time; levers "torch-dropout", "kg-torch-dropout").
RECIPE_TEXT = {"freeze_embeddings": True}
RECIPE_ARGS = {"lane_dropout": True}


@dataclass
class KgmmVariant:
    """A kgmm contender: the model, and what it changes in kgmm's recipe: ``TrainingArguments``
    fields, text-encoder options, a model transform and the thread count (``None``: the
    run's)."""

    knowledge: bool
    overrides: dict[str, Any] = field(default_factory=dict)
    text: dict[str, Any] = field(default_factory=dict)
    transform: Callable[[kgmm.FusedModel], kgmm.FusedModel] | None = None
    threads: int | None = None


KGMM = {"kgmm_text": KgmmVariant(False), "kgmm_kg": KgmmVariant(True)}
LEVERS = {
    "train-embeddings": KgmmVariant(False, text={"freeze_embeddings": False}),
    "kg-train-embeddings": KgmmVariant(True, text={"freeze_embeddings": False}),
    "compile": KgmmVariant(False, {"compile": True}),
    "kg-compile": KgmmVariant(True, {"compile": True}),
    "torch-dropout": KgmmVariant(False, {"lane_dropout": False}),
    "kg-torch-dropout": KgmmVariant(True, {"lane_dropout": False}),
    "fp32": KgmmVariant(False, {"bf16": False}),
    "no-grouping": KgmmVariant(False, {"group_by_length": False}),
    "bf16-weights": KgmmVariant(
        False, {"bf16": False}, transform=lambda model: model.to(torch.bfloat16)
    ),
    "eager-attention": KgmmVariant(
        False, text={"config_overrides": {"_attn_implementation": "eager"}}
    ),
    "worker": KgmmVariant(False, {"num_workers": 1}),
    "2-threads": KgmmVariant(False, threads=2),
    "peer2-worker": Peer2Variant(workers=1),
    "peer2-2-threads": Peer2Variant(threads=2),
}


def run_kgmm(
    train: list[dict],
    test: list[dict] | None,
    labels: list[str],
    device: torch.device,
    warmup: int,
    epochs: float,
    max_steps: int,
    variant: KgmmVariant,
    save_to: Path | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> Run:
    model = kgmm_model(labels, variant.knowledge, **{**RECIPE_TEXT, **variant.text})
    if variant.transform is not None:
        model = variant.transform(model)
    clock = KgmmClock(device)
    with tempfile.TemporaryDirectory() as output_dir, torch_threads(variant.threads):
        args = training_arguments(
            Path(output_dir),
            epochs,
            **{"max_steps": max_steps, "device": device.type, **RECIPE_ARGS, **variant.overrides},
        )
        callbacks = [clock, *(callbacks or [])]
        kgmm.Trainer(model, {TASK: train}, args=args, callbacks=callbacks).train()
    accuracy = kgmm_accuracy(model, test, device) if test is not None else None
    if save_to is not None:
        model.save_pretrained(save_to)
    return Run(clock.samples_per_s(warmup, BATCH), accuracy)


@torch.no_grad()
def kgmm_accuracy(model: kgmm.FusedModel, samples: list[dict], device: torch.device) -> float:
    """Test accuracy, fp32, batches of 128 moved to ``device`` (``FusedModel.predict``
    leaves batches on the CPU)."""
    collate = model.collator(TASK, targets=False)
    labels = model.heads[TASK].labels
    model.eval()
    hits = 0
    for start in range(0, len(samples), 128):
        chunk = samples[start : start + 128]
        logits = model(task=TASK, **move_to(collate(chunk), device)).logits
        gold = torch.tensor([labels.index(s["label"]) for s in chunk], device=device)
        hits += int((logits.argmax(-1) == gold).sum())
    return hits / len(samples)


def kgmm_flops_per_sample(
    train: list[dict], labels: list[str], knowledge: bool, device: torch.device
) -> tuple[float, dict[str, float]]:
    """FLOPs per sample over an epoch of batches drawn as kgmm's recipe draws them
    (length-grouped), and those batches' tokens (real and padded) and entities per sample."""
    model = kgmm_model(labels, knowledge).to(device).train()
    collate = model.collator(TASK)
    sampler = EpochBatchSampler(len(train), BATCH, seed=0, lengths=text_lengths(train))
    batches = [collate([train[i] for i in indices]) for indices in sampler]
    masks = [batch["text"]["attention_mask"] for batch in batches]
    shape = {
        "tokens_per_sample": sum(float(mask.sum()) for mask in masks) / len(train),
        "padded_tokens_per_sample": sum(mask.numel() for mask in masks) / len(train),
        "entities_per_sample": sum(float(b["entity_mask"].sum()) for b in batches) / len(train),
    }

    def step(batch: dict[str, Any]) -> None:
        with autocast(device, native_bf16(device)):
            loss = model(task=TASK, **move_to(batch, device)).loss
        loss.backward()

    return flops_per_sample(batches, len(train), step), shape


def flops_per_sample(
    batches: list[dict[str, Any]], samples: int, step: Callable[[dict], None]
) -> float:
    """Counted FLOPs of ``step`` (a forward and backward pass) over ``batches``, per sample.
    FLOPs depend on tensor shapes alone, so batches of the same shapes are counted once: an
    epoch costs a pass per padded length, not per batch."""
    counted: dict[tuple, int] = {}
    total = 0
    for batch in batches:
        leaves = tree_leaves(batch)
        key = tuple(tuple(leaf.shape) for leaf in leaves if isinstance(leaf, torch.Tensor))
        if key not in counted:
            counted[key] = counted_flops(functools.partial(step, batch))
        total += counted[key]
    return total / samples


# ---------------------------------------------------------------- levers outside the Trainer
def adamw_step_ms(labels: list[str], device: torch.device, fused: bool, steps: int) -> float:
    """Median ms of one AdamW step over the text model's parameters (random gradients)."""
    model = kgmm_model(labels, False).to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    for parameter in parameters:
        parameter.grad = torch.randn_like(parameter)
    optimizer = torch.optim.AdamW(parameters, lr=1e-4, fused=fused, foreach=None if fused else True)
    times = []
    for _ in range(steps + 2):
        start = time.perf_counter()
        optimizer.step()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times[2:]) * 1e3


# ---------------------------------------------------------------- turns
class Turns:
    """Contenders trained in threads of one process, taking one optimizer step each in turn.

    This host's speed drifts 2-4x within a minute, so contenders run one after the other meet
    different machines. In turns, the k-th steps of all contenders run seconds apart and the
    ratio of their summed step times is a paired measurement. A turn holds all of a
    contender's work between two optimizer steps (data loading and collation included): the
    others wait. The order is shuffled (seeded) after every round, so no contender always
    follows the same one and inherits its caches and allocations. Hand-written: no
    benchmarking library interleaves whole training loops.
    """

    def __init__(self, names: list[str], device: torch.device) -> None:
        self.order = list(names)
        self.rng = random.Random(0)
        self.device = device
        self.condition = threading.Condition()
        self.current = 0
        self.started = 0.0
        self.step_seconds: dict[str, list[float]] = {name: [] for name in names}

    def begin(self, name: str) -> None:
        """Block until it is ``name``'s turn."""
        with self.condition:
            self.condition.wait_for(lambda: self.order[self.current] == name)
        self.started = time.perf_counter()

    def end_step(self, name: str) -> None:
        """Record ``name``'s step, hand the turn on and wait for the next one."""
        synchronize(self.device)
        self.step_seconds[name].append(time.perf_counter() - self.started)
        self._hand_on(name, leaving=False)
        self.begin(name)

    def leave(self, name: str) -> None:
        """``name`` is done: the others go on without it."""
        self._hand_on(name, leaving=True)

    def _hand_on(self, name: str, leaving: bool) -> None:
        with self.condition:
            index = self.order.index(name)
            if leaving:
                self.order.pop(index)  # the next contender now sits at ``index``
            else:
                index += 1
            if index >= len(self.order):  # the round is over
                self.rng.shuffle(self.order)
                index = 0
            self.current = index
            self.condition.notify_all()


class TurnTaker:
    """Ends the contender's turn at the end of every optimizer step."""

    def __init__(self, turns: Turns, name: str) -> None:
        self.turns, self.name = turns, name

    def on_step_end(self, *args: Any, **kwargs: Any) -> None:
        self.turns.end_step(self.name)


class KgmmTurn(TurnTaker, TrainerCallback):
    """A :class:`TurnTaker` for ``kgmm.Trainer``."""


class HFTurn(TurnTaker, transformers.TrainerCallback):
    """A :class:`TurnTaker` for ``transformers.Trainer``."""


def needs_own_process(variant: KgmmVariant | Peer2Variant) -> bool:
    """Thread counts are process-wide and workers run beside the others' turns."""
    peer = isinstance(variant, Peer2Variant)
    workers = variant.workers if peer else variant.overrides.get("num_workers", 0)
    return bool(workers or variant.threads)


def turns_phase(
    names: list[str], train: list[dict], labels: list[str], options: argparse.Namespace
) -> dict[str, list[float]]:
    """Timed step seconds of each contender trained in turns (after the warm-up steps)."""
    device, warmup = options.device, options.warmup_steps
    steps = warmup + options.timed_steps
    turns = Turns(names, device)
    errors: dict[str, BaseException] = {}

    def train_in_turns(name: str) -> None:
        turns.begin(name)
        try:
            variant = contender_variant(name)
            hook = (HFTurn if isinstance(variant, Peer2Variant) else KgmmTurn)(turns, name)
            samples = cycled(train, steps * BATCH)
            trainer_run(variant)(
                samples, None, labels, device, warmup, 1, steps, variant, callbacks=[hook]
            )
        except BaseException as error:  # re-raised in the main thread below
            errors[name] = error
        finally:
            turns.leave(name)

    threads = [threading.Thread(target=train_in_turns, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        name, error = next(iter(errors.items()))
        raise RuntimeError(f"{name} failed while training in turns") from error
    timed = {name: seconds[warmup:] for name, seconds in turns.step_seconds.items()}
    for name, seconds in timed.items():
        print(f"in turns: {name:34} {BATCH * len(seconds) / sum(seconds):8.2f} samples/s")
    return timed


def paired_ratio(
    reference: list[float], contender: list[float], resamples: int = 1000
) -> tuple[float, float, float]:
    """Speed of ``contender`` over ``reference`` from their step seconds in the same turns:
    the ratio of summed times, and a 90% bootstrap interval over turns."""
    pairs = list(zip(reference, contender))
    rng = random.Random(0)
    draws = sorted(
        sum(r for r, _ in sample) / sum(c for _, c in sample)
        for sample in ([rng.choice(pairs) for _ in pairs] for _ in range(resamples))
    )
    ratio = sum(r for r, _ in pairs) / sum(c for _, c in pairs)
    return ratio, draws[int(0.05 * resamples)], draws[int(0.95 * resamples) - 1]


# ---------------------------------------------------------------- main
def throughput_phase(
    names: list[str], train: list[dict], labels: list[str], options: argparse.Namespace
) -> dict[str, list[float]]:
    """samples/s of each contender in each of ``options.repeats`` alternating rounds."""
    device, warmup, timed = options.device, options.warmup_steps, options.timed_steps
    speeds: dict[str, list[float]] = {name: [] for name in names}
    for round_ in range(options.repeats):
        for name in names:
            steps = warmup + timed
            if name == "peer1_tutorial" and round_ > 0:
                continue  # ten times slower than the rest: one round tells enough
            if name == "peer1_tutorial":
                run = run_peer1(train, labels, timed, warmup, device)
            else:
                variant = contender_variant(name)
                run = trainer_run(variant)(
                    cycled(train, steps * BATCH), None, labels, device, warmup, 1, steps, variant
                )
            speeds[name].append(run.samples_per_s)
            print(f"round {round_ + 1}: {name:34} {run.samples_per_s:8.2f} samples/s", flush=True)
    return speeds


def trainer_run(variant: KgmmVariant | Peer2Variant) -> Callable[..., Run]:
    """The function that trains a contender of this kind: ``run_peer2`` or ``run_kgmm``."""
    return run_peer2 if isinstance(variant, Peer2Variant) else run_kgmm


def seeded(variant: KgmmVariant | Peer2Variant, seed: int) -> KgmmVariant | Peer2Variant:
    """``variant`` trained with the Trainer seed ``seed`` (shuffling, dropout masks); the
    model's initialisation and the data slices keep seed 0."""
    if isinstance(variant, Peer2Variant):
        return dataclasses.replace(variant, seed=seed)
    return dataclasses.replace(variant, overrides={**variant.overrides, "seed": seed})


def contender_variant(name: str) -> KgmmVariant | Peer2Variant:
    """The variant of a contender or ``lever: NAME`` row."""
    if name == "peer2_hf_trainer":
        return Peer2Variant()
    return KGMM.get(name) or LEVERS[name.removeprefix("lever: ")]


def paired_columns(step_seconds: dict[str, list[float]], name: str) -> dict[str, Any]:
    """With turns: the paired ratio to peer 2 and its 90% interval (replacing the plain
    ratio of medians); for a lever also the paired ratio to the contender it changes."""
    if name not in step_seconds or "peer2_hf_trainer" not in step_seconds:
        return {}
    ratio, low, high = paired_ratio(step_seconds["peer2_hf_trainer"], step_seconds[name])
    columns = {"ratio_to_peer2": ratio, "ratio_low": low, "ratio_high": high, "turns": True}
    base = same_model(contender_variant(name))
    if name.startswith("lever: ") and base in step_seconds:
        to_base, base_low, base_high = paired_ratio(step_seconds[base], step_seconds[name])
        columns.update(
            {"versus": base, "ratio_to_it": to_base, "it_low": base_low, "it_high": base_high}
        )
    return {**columns, "step_seconds": step_seconds[name]}


def same_model(variant: KgmmVariant | Peer2Variant) -> str:
    """The contender whose model (so FLOPs per sample) a lever trains."""
    if isinstance(variant, Peer2Variant):
        return "peer2_hf_trainer"
    return "kgmm_kg" if variant.knowledge else "kgmm_text"


def accuracy_phase(
    train: list[dict], test: list[dict], labels: list[str], options: argparse.Namespace
) -> dict[str, Run]:
    device, warmup = options.device, options.warmup_steps
    epochs, max_steps = options.epochs, options.max_steps
    runs = {}
    for name in options.accuracy_contenders:
        variant = seeded(contender_variant(name), options.seed)
        saving = {"save_to": options.save_model} if name == "kgmm_kg" else {}
        runs[name] = trainer_run(variant)(
            train, test, labels, device, warmup, epochs, max_steps, variant, **saving
        )
        print(f"accuracy run: {name} {runs[name]}", flush=True)
    return runs


def main(argv: list[str] | None = None) -> dict:
    options = parse_args(argv)
    transformers.logging.set_verbosity_error()
    transformers.logging.disable_progress_bar()
    if options.threads:
        torch.set_num_threads(options.threads)
    options.device = torch.device(options.device)
    train, test, labels = load_data(
        options.data_dir, options.train_samples, options.test_samples, options.quick, seed=0
    )
    device = options.device
    peak_dtype = torch.bfloat16 if native_bf16(device) else torch.float32
    peaks = [matmul_peak(device, peak_dtype)]
    levers = list(LEVERS) if options.levers == [] else options.levers or []
    names = list(CONTENDERS) + [f"lever: {lever}" for lever in levers]
    step_seconds: dict[str, list[float]] = {}
    if options.turns:
        speeds = throughput_phase(
            [n for n in names if n == "peer1_tutorial"], train, labels, options
        )
        step_seconds = turns_phase(
            [n for n in names if n != "peer1_tutorial"], train, labels, options
        )
        speeds.update({name: [BATCH * len(s) / sum(s)] for name, s in step_seconds.items()})
    else:
        speeds = throughput_phase(names, train, labels, options) if options.repeats else {}
    runs = accuracy_phase(train, test, labels, options) if options.accuracy else {}
    peaks.append(matmul_peak(device, peak_dtype))
    peak = max(peaks)
    fp32_peak = peak if peak_dtype == torch.float32 else matmul_peak(device, torch.float32)

    flops = {
        "peer1_tutorial": peer1_flops_per_sample(train, labels, device),
        "peer2_hf_trainer": peer2_flops_per_sample(train, labels, device),
    }
    flops["kgmm_text"], text_shape = kgmm_flops_per_sample(train, labels, False, device)
    flops["kgmm_kg"], kg_shape = kgmm_flops_per_sample(train, labels, True, device)
    text_config = transformers.AutoConfig.from_pretrained(default_text_model_path())
    step_shapes = encoder_layer_shapes(
        round(BATCH * text_shape["padded_tokens_per_sample"]),
        text_config.hidden_size,
        text_config.intermediate_size,
    )
    layer_rate = matmul_rate(step_shapes, device, peak_dtype)

    def speed(name: str) -> float | None:
        if speeds.get(name):
            return statistics.median(speeds[name])
        return runs[name].samples_per_s if name in runs else None

    reference = speed("peer2_hf_trainer")
    rows = []
    for name in (name for name in names if speed(name)):
        per_sample = flops.get(name) or flops[same_model(contender_variant(name))]
        throughput = speed(name)
        rows.append(
            {
                "contender": name,
                "samples_per_s": throughput,
                "runs_samples_per_s": speeds.get(name, []),
                "ratio_to_peer2": throughput / reference if throughput and reference else None,
                **paired_columns(step_seconds, name),
                "accuracy_run_samples_per_s": runs[name].samples_per_s if name in runs else None,
                "test_accuracy": runs[name].accuracy if name in runs else None,
                "gflops_per_sample": per_sample / 1e9 if per_sample else None,
                "mfu": per_sample * throughput / peak if per_sample and throughput else None,
            }
        )
    columns = [
        "contender",
        "samples_per_s",
        "ratio_to_peer2",
        "ratio_low",
        "ratio_high",
        "versus",
        "ratio_to_it",
        "accuracy_run_samples_per_s",
        "test_accuracy",
        "gflops_per_sample",
        "mfu",
    ]
    print(format_table(rows, columns, float_format=".3f"))
    precision = "bf16" if peak_dtype == torch.bfloat16 else "fp32"
    print(
        f"{precision} matmul peak {peak / 1e12:.3f} TFLOP/s, fp32 {fp32_peak / 1e12:.3f} TFLOP/s "
        f"({torch.get_num_threads()} threads, {device}); kgmm_kg: "
        f"{kg_shape['entities_per_sample']:.1f} entities and "
        f"{kg_shape['tokens_per_sample']:.1f} tokens per sample"
    )
    print(
        f"{precision} matmuls of MiniLM's linears at the batch's {step_shapes[0][0]} tokens: "
        f"{layer_rate / 1e12:.3f} TFLOP/s, {layer_rate / peak:.0%} of the peak"
    )
    extra: dict[str, Any] = {}
    if levers:
        extra["adamw_step_ms"] = {
            kind: adamw_step_ms(labels, device, kind == "fused", steps=10)
            for kind in ("fused", "foreach")
        }
        print(f"AdamW step over the text model: {extra['adamw_step_ms']} ms")
    summary = {
        "matmul_peak_precision": precision,
        "matmul_peak_flops": peak,
        "fp32_matmul_peak_flops": fp32_peak,
        "matmul_rate_at_step_shapes": layer_rate,
        "step_shapes": "encoder_layer_shapes(batch x text tokens per sample, hidden, "
        "intermediate): the linears' forward and both backward matmuls",
        "flops_counter": "torch.utils.flop_counter.FlopCounterMode, forward+backward of "
        "an epoch of batches drawn as each contender draws them (padding included)",
        "batch": {"text": text_shape, "kg": kg_shape},
        "settings": {
            key: str(value) if isinstance(value, (Path, torch.device)) else value
            for key, value in vars(options).items()
        },
        "train_samples": len(train),
        "test_samples": len(test),
        **extra,
    }
    write_results(Path(options.out), "train_speed", rows, **summary)
    return {"rows": rows, **summary}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=DEFAULT_DATA)
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's)")
    parser.add_argument("--epochs", type=float, default=3.0)
    parser.add_argument("--max-steps", type=int, default=-1, help="> 0: accuracy runs stop here")
    parser.add_argument("--train-samples", type=int, help="a seeded slice of the training set")
    parser.add_argument("--test-samples", type=int, help="a seeded slice of the test set")
    parser.add_argument("--repeats", type=int, default=3, help="throughput rounds (0: none)")
    parser.add_argument("--warmup-steps", type=int, default=3)
    parser.add_argument("--timed-steps", type=int, default=20)
    parser.add_argument("--no-accuracy", dest="accuracy", action="store_false")
    parser.add_argument(
        "--turns",
        action="store_true",
        help="throughput with every contender (but peer 1) training in turns, one step each, "
        "in one process: a paired measurement on a machine whose speed drifts",
    )
    parser.add_argument(
        "--accuracy-contenders",
        nargs="+",
        choices=[*SCORED, *LEVERS],
        default=list(SCORED),
        help="the contenders the accuracy phase trains (several processes can share the work); "
        "a lever named here is scored too, in its 'lever: NAME' row",
    )
    parser.add_argument(
        "--levers",
        nargs="*",
        choices=list(LEVERS),
        help="also time these kgmm_text variants (no name: all)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="the accuracy runs' Trainer seed (batches, dropout)"
    )
    parser.add_argument("--save-model", type=Path, help="save the trained kgmm_kg model here")
    parser.add_argument("--quick", action="store_true", help="5 intents, 2 steps: a smoke run")
    parser.add_argument("--out", default="results/train_speed.json")
    options = parser.parse_args(argv)
    scored_levers = [name for name in options.accuracy_contenders if name in LEVERS]
    if scored_levers and options.levers != []:  # [] already means every lever
        options.levers = list(dict.fromkeys([*(options.levers or []), *scored_levers]))
    options.accuracy_contenders = [
        f"lever: {name}" if name in LEVERS else name for name in options.accuracy_contenders
    ]
    if options.turns and options.levers == []:  # every lever that can take turns
        options.levers = [name for name, lever in LEVERS.items() if not needs_own_process(lever)]
    if options.turns:
        own = [name for name in options.levers or [] if needs_own_process(LEVERS[name])]
        if own:
            parser.error(f"--turns cannot time {own} (own threads or data-loader workers)")
    if options.quick:
        options.repeats, options.warmup_steps, options.timed_steps = 1, 1, 2
        options.max_steps = 2
    return options


if __name__ == "__main__":
    main()
