"""``kgmm train CONFIG.yaml`` and ``kgmm evaluate CHECKPOINT --data FILE --task T``."""

from __future__ import annotations

import argparse
import json

from kgmm.cli.inference_model import add_inference_arguments, load_for_inference


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="train a model from a YAML run config")
    train.add_argument("config", help="YAML with model, graph, data and training sections")
    train.add_argument(
        "--resume", action="store_true", help="continue from the newest checkpoint in output_dir"
    )
    train.set_defaults(run=run_train)

    evaluate = commands.add_parser("evaluate", help="print a checkpoint's metrics on a manifest")
    precision = add_inference_arguments(evaluate)
    precision.add_argument(
        "--bf16", dest="precision", action="store_const", const="bf16", help="--precision bf16"
    )
    evaluate.add_argument("--data", required=True, help="JSONL manifest of samples with targets")
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
    from kgmm.training import evaluate_task

    samples = read_manifest(args.data)
    model, bf16, device = load_for_inference(args)
    metrics = evaluate_task(model, args.task, samples, args.batch_size, device, bf16)
    print(json.dumps(metrics, indent=2))
    return 0
