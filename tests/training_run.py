"""A tiny three-task training run, importable by tests and runnable as a script.

As a script (for the kill/resume and torchrun tests)::

    python tests/training_run.py OUTPUT_DIR --max-steps 12 --save-steps 4 [--resume]
        [--hang-in-save STEP] [--tasks intent,qa] [--batch-size 4] [--dropout 0.1]

It trains, then writes the final parameters to ``OUTPUT_DIR/final.safetensors`` (rank 0).
``--hang-in-save STEP`` makes the process stop forever half-way through writing
``checkpoint-STEP`` (after the model files, before the training state), so a test can kill
it mid-save.
"""

from __future__ import annotations

import argparse
import random
import time
from pathlib import Path

import torch
from safetensors.torch import save_file

from kgmm import FusedConfig, FusedModel, KnowledgeGraph
from kgmm.fusion import FusionConfig
from kgmm.training import Trainer, TrainingArguments

SYMPTOMS = ["flu", "fever", "cough", "rash", "headache", "nausea"]
INTENT_WORDS = {"billing": "invoice", "shipping": "parcel", "refund": "money back"}
ANSWER_WORDS = {"yes": "always", "no": "never", "maybe": "sometimes"}
FILLER = ["please", "the", "a", "my", "with", "today", "and", "since", "now", "help"]
VOCAB = ["<pad>", "<s>", "</s>", *SYMPTOMS]  # target ids for the translation task


def tiny_text(dropout: float) -> dict:
    return {
        "config_overrides": {
            "num_hidden_layers": 1,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "hidden_dropout_prob": dropout,
            "attention_probs_dropout_prob": dropout,
        },
        "random_init": True,
        "max_length": 32,
    }


def knowledge_graph() -> KnowledgeGraph:
    return KnowledgeGraph.from_triples(
        [
            ("flu", "has_symptom", "fever"),
            ("flu", "has_symptom", "cough"),
            ("measles", "has_symptom", "rash"),
            ("migraine", "has_symptom", "headache"),
            ("migraine", "has_symptom", "nausea"),
        ]
    )


def head_specs(dropout: float) -> dict[str, dict]:
    return {
        "intent": {"type": "classification", "labels": list(INTENT_WORDS), "dropout": dropout},
        "qa": {"type": "qa", "dropout": dropout},
        "mt": {
            "type": "translation",
            "vocab_size": len(VOCAB),
            "num_layers": 1,
            "num_heads": 2,
            "ffn_dim": 32,
            "dropout": dropout,
            "max_length": 12,
            "beam_size": 2,
            "label_smoothing": 0.0,
        },
    }


def build_model(dropout: float = 0.1, tasks: tuple[str, ...] = ("intent", "qa", "mt")):
    specs = head_specs(dropout)
    config = FusedConfig(
        text=tiny_text(dropout),
        fusion=FusionConfig(d_model=32, num_heads=2, dropout=dropout),
        heads={task: specs[task] for task in tasks},
        entity_embeddings={"source": "random", "dim": 16},
        seed=0,
    )
    return FusedModel(config, kg=knowledge_graph())


def make_samples(task: str, count: int, seed: int) -> list[dict]:
    """Synthetic samples whose target is readable from the text."""
    rng = random.Random(seed)
    samples = []
    for _ in range(count):
        filler = rng.sample(FILLER, rng.randint(1, 4))
        symptoms = rng.sample(SYMPTOMS, rng.randint(1, 3))
        if task == "intent":
            label = rng.choice(list(INTENT_WORDS))
            samples.append({"text": " ".join([*filler, INTENT_WORDS[label]]), "label": label})
        elif task == "qa":
            answer = rng.choice(list(ANSWER_WORDS))
            text = " ".join(["does", symptoms[0], ANSWER_WORDS[answer], "happen", *filler])
            samples.append({"text": text, "answer": answer})
        else:
            target = [VOCAB.index(word) for word in symptoms]
            samples.append({"text": " ".join([*filler, *symptoms]), "target": target})
    return samples


def datasets(tasks, train_size: int = 32, eval_size: int = 12):
    train = {task: make_samples(task, train_size, seed=i) for i, task in enumerate(tasks)}
    evaluation = {task: make_samples(task, eval_size, seed=100 + i) for i, task in enumerate(tasks)}
    return train, evaluation


def train_once(
    output_dir: str | Path,
    max_steps: int = 12,
    save_steps: int = 4,
    tasks: tuple[str, ...] = ("intent", "qa", "mt"),
    batch_size: int = 4,
    accumulation: int = 1,
    dropout: float = 0.1,
    resume: bool = False,
) -> Trainer:
    """Train the tiny model on the synthetic data; returns the trainer."""
    train, _ = datasets(tasks)
    args = TrainingArguments(
        output_dir=str(output_dir),
        max_steps=max_steps,
        save_steps=save_steps,
        batch_size=batch_size,
        gradient_accumulation_steps=accumulation,
        learning_rate=3e-3,
        warmup_steps=2,
        logging_steps=2,
        resume_from_checkpoint=resume or None,
        device="cpu",
        progress_bar=False,
    )
    trainer = Trainer(build_model(dropout, tasks), train, args=args)
    trainer.train()
    return trainer


def _hang_in_save(step: int) -> None:
    """Stop forever while ``checkpoint-STEP`` is being written (model files already there)."""
    import kgmm.training.trainer as trainer_module

    original = trainer_module.save_state

    def save_state(state, path):
        if path.name == "training_state.pt" and state["step"] == step:
            time.sleep(3600)
        original(state, path)

    trainer_module.save_state = save_state


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("output_dir")
    parser.add_argument("--max-steps", type=int, default=12)
    parser.add_argument("--save-steps", type=int, default=4)
    parser.add_argument("--tasks", default="intent,qa,mt")
    parser.add_argument("--batch-size", type=int, default=4)
    parser.add_argument("--accumulation", type=int, default=1)
    parser.add_argument("--dropout", type=float, default=0.1)
    parser.add_argument("--resume", action="store_true")
    parser.add_argument("--hang-in-save", type=int)
    options = parser.parse_args()
    torch.set_num_threads(1)
    if options.hang_in_save is not None:
        _hang_in_save(options.hang_in_save)
    trainer = train_once(
        options.output_dir,
        max_steps=options.max_steps,
        save_steps=options.save_steps,
        tasks=tuple(options.tasks.split(",")),
        batch_size=options.batch_size,
        accumulation=options.accumulation,
        dropout=options.dropout,
        resume=options.resume,
    )
    if trainer.distributed.is_main:
        state = {k: v.detach().contiguous() for k, v in trainer.model.named_parameters()}
        save_file(state, str(Path(options.output_dir) / "final.safetensors"))


if __name__ == "__main__":
    main()
