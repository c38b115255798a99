"""Where a run happened (hardware, library versions, git commit) and writing results files."""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

import torch

from kgmm.device import native_bf16

REPOSITORY = Path(__file__).resolve().parents[2]


def _git(folder: Path, *arguments: str) -> str | None:
    """Standard output of ``git ARGUMENTS`` in ``folder``, or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", *arguments], cwd=folder, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout


def git_commit(folder: Path = REPOSITORY) -> str | None:
    """``git rev-parse HEAD`` in ``folder``, or None outside a checkout."""
    return (_git(folder, "rev-parse", "HEAD") or "").strip() or None


def git_modified(folder: Path = REPOSITORY) -> list[str] | None:
    """Tracked files that differ from the commit (the run did not use the commit as is), or
    None outside a checkout."""
    status = _git(folder, "status", "--porcelain", "--untracked-files=no")
    return None if status is None else [line[3:] for line in status.splitlines()]


def cpu_model() -> str:
    """The CPU's model name from ``/proc/cpuinfo`` (Linux), else ``platform.processor()``."""
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        lines = []
    names = [line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")]
    return names[0] if names else platform.processor()


def run_environment() -> dict[str, Any]:
    """``{"hardware": {...}, "git_commit": ...}`` to merge into a ``results.json``."""
    return {
        "hardware": {
            "cpu": cpu_model(),
            "cpu_capability": torch.backends.cpu.get_cpu_capability(),
            "cpu_native_bf16": native_bf16(torch.device("cpu")),
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
        "git_modified": git_modified(),
    }


def arguments_record(arguments: argparse.Namespace) -> dict[str, Any]:
    """A script's parsed arguments as JSON-ready values (paths as strings)."""
    return {k: str(v) if isinstance(v, Path) else v for k, v in vars(arguments).items()}


def write_results(folder: Path, summary: dict[str, Any]) -> Path:
    """Write ``summary`` as ``folder/results.json`` (creating ``folder``); return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "results.json"
    path.write_text(json.dumps(summary, indent=2) + "\n")
    return path


def finish_run(arguments: argparse.Namespace, summary: dict[str, Any], started: float) -> dict:
    """Complete an example's ``summary`` with its seed, arguments, wall time since
    ``started`` (``time.perf_counter()``), hardware and commit; write it to
    ``arguments.out/results.json``, say where, and return it."""
    summary = {
        **summary,
        "seed": arguments.seed,
        "arguments": arguments_record(arguments),
        "wall_seconds": time.perf_counter() - started,
        **run_environment(),
    }
    path = write_results(arguments.out, summary)
    print(f"results written to {path} ({summary['wall_seconds']:.0f} s)")
    return summary
