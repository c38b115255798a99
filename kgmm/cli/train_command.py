"""``kgmm train CONFIG.yaml`` and ``kgmm evaluate CHECKPOINT --data FILE --task T``."""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model from a YAML run config")
    train.add_argument("config", help="YAML with model, graph, data and training sections")
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in output_dir"
    )
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("evaluate", help="print a checkpoint's metrics on a manifest")
    evaluate.add_argument("checkpoint", help="folder written by save_pretrained or a checkpoint")
    evaluate.add_argument("--data", required=True, help="JSONL manifest of samples with targets")
    evaluate.add_argument("--task", required=True, help="the head to evaluate")
    evaluate.add_argument("--batch-size", type=int, default=32)
    evaluate.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    evaluate.add_argument("--bf16", action="store_true", help="bfloat16 autocast")
    evaluate.set_defaults(run=run_evaluate)


def run_train(args: argparse.Namespace) -> int:
    from kgmm.training import trainer_from_config

    overrides = {"resume_from_checkpoint": True} if args.resume else {}
    trainer = trainer_from_config(args.config, **overrides)
    result = trainer.train()
    if not trainer.distributed.is_main:
        return 0
    summary = {
        "step": result.step,
        "training_loss": result.training_loss,
        "best_metric": result.best_metric,
        "best_step": result.best_step,
        "stopped_early": result.stopped_early,
        "checkpoint": str(result.checkpoint),
    }
    print(json.dumps(summary, indent=2))
    return 0


def run_evaluate(args: argparse.Namespace) -> int:
    from kgmm.data import read_manifest
    from kgmm.model import FusedModel
    from kgmm.training import evaluate_task
    from kgmm.training.device import resolve_device

    model = FusedModel.from_pretrained(args.checkpoint)
    device = resolve_device(args.device)
    model.to(device)
    samples = read_manifest(args.data)
    metrics = evaluate_task(model, args.task, samples, args.batch_size, device, args.bf16)
    print(json.dumps(metrics, indent=2))
    return 0
