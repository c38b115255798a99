"""Shared test settings."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch


@pytest.fixture(autouse=True, scope="session")
def one_torch_thread():
    """One intra-op thread: on a shared 2-core machine, two threads waiting on each other
    made small-model tests up to 25x slower, and one thread keeps results reproducible."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


SHARED_DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"


def shared_dataset(name: str) -> Path:
    """``../shared/datasets/<name>`` (or ``$KGMM_DATA_DIR/<name>``); skip the test when absent."""
    root = Path(os.environ.get("KGMM_DATA_DIR", SHARED_DATASETS))
    folder = root / name
    if not folder.is_dir():
        pytest.skip(f"dataset folder {folder} is absent (set KGMM_DATA_DIR to the datasets folder)")
    return folder


BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def import_benchmark(name: str) -> ModuleType:
    """``benchmarks/<name>.py`` imported by plain name (the scripts import their siblings that
    way, and the processes they spawn must find them too)."""
    if str(BENCHMARKS) not in sys.path:
        sys.path.insert(0, str(BENCHMARKS))
    return importlib.import_module(name)
