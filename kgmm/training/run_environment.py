"""Where a run happened: hardware, library versions and the git commit, for results files."""

from __future__ import annotations

import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import torch

REPOSITORY = Path(__file__).resolve().parents[2]


def git_commit(folder: Path = REPOSITORY) -> str | None:
    """``git rev-parse HEAD`` in ``folder``, or None outside a checkout."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=folder, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return done.stdout.strip() or None


def run_environment() -> dict[str, Any]:
    """``{"hardware": {...}, "git_commit": ...}`` to merge into a ``results.json``."""
    return {
        "hardware": {
            "cpu_count": os.cpu_count(),
            "torch": torch.__version__,
            "torch_threads": torch.get_num_threads(),
            "cuda": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "git_commit": git_commit(),
    }
