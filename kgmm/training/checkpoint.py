"""Training checkpoints: ``checkpoint-STEP`` folders that appear whole or not at all.

A checkpoint holds what ``FusedModel.save_pretrained`` writes (so ``from_pretrained`` and
``kgmm evaluate`` read it), ``training_state.pt`` (optimizer, scheduler, step, task sampler
and data positions, best metric) and one ``rng_state_RANK.pt`` per process. Everything is
written into a hidden staging folder that is renamed into place last, so a process killed
while saving leaves no ``checkpoint-*`` folder behind, only a staging folder that the next
save removes. State files are read with ``torch.load(weights_only=True)``: no code runs.
"""

from __future__ import annotations

import os
import pickle
import re
import shutil
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file
from torch import nn

from kgmm.errors import CheckpointError
from kgmm.model.fused_model import WEIGHTS_FILE

CHECKPOINT_NAME = re.compile(r"^checkpoint-(\d+)$")
TRAINING_STATE_FILE = "training_state.pt"
TRAINER_STATE_FILE = "trainer_state.json"
STAGING_PREFIX = ".staging-"
TRASH_PREFIX = ".trash-"


def checkpoint_dir(output_dir: str | Path, step: int) -> Path:
    return Path(output_dir) / f"checkpoint-{step}"


def staging_dir(final: Path) -> Path:
    """Where ``final`` is written before :func:`publish` renames it into place."""
    return final.parent / f"{STAGING_PREFIX}{final.name}"


def rng_state_file(directory: Path, rank: int) -> Path:
    return directory / f"rng_state_{rank}.pt"


def publish(staging: Path, final: Path) -> None:
    """Rename the finished ``staging`` folder to ``final``, replacing an older ``final``."""
    if not final.exists():
        os.replace(staging, final)
        return
    trash = final.parent / f"{TRASH_PREFIX}{final.name}"
    shutil.rmtree(trash, ignore_errors=True)
    os.replace(final, trash)
    os.replace(staging, final)
    shutil.rmtree(trash)


def checkpoints(output_dir: str | Path) -> list[tuple[int, Path]]:
    """Complete checkpoints in ``output_dir`` as ``(step, folder)``, oldest first."""
    found = []
    directory = Path(output_dir)
    if not directory.is_dir():
        return []
    for child in directory.iterdir():
        match = CHECKPOINT_NAME.match(child.name)
        if match and (child / TRAINING_STATE_FILE).is_file() and (child / WEIGHTS_FILE).is_file():
            found.append((int(match.group(1)), child))
    return sorted(found)


def latest_checkpoint(output_dir: str | Path) -> Path | None:
    """The complete checkpoint with the highest step, or ``None``."""
    found = checkpoints(output_dir)
    return found[-1][1] if found else None


def prune_checkpoints(output_dir: str | Path, keep: int) -> None:
    """Delete all but the ``keep`` newest checkpoints."""
    found = checkpoints(output_dir)
    for _, folder in found[: max(0, len(found) - keep)]:
        shutil.rmtree(folder)


def remove_unfinished(output_dir: str | Path) -> None:
    """Delete staging and trash folders left by a process killed while saving."""
    directory = Path(output_dir)
    if directory.is_dir():
        for child in directory.iterdir():
            if child.name.startswith((STAGING_PREFIX, TRASH_PREFIX)) and child.is_dir():
                shutil.rmtree(child)


def save_state(state: dict[str, Any], path: Path) -> None:
    """``torch.save`` of tensors, numbers, strings, lists and dicts only."""
    torch.save(state, path)


def load_state(path: Path) -> dict[str, Any]:
    """Read a file written by :func:`save_state` without running any pickled code."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise CheckpointError(f"{path} is missing; is this a kgmm training checkpoint?") from None
    except (pickle.UnpicklingError, RuntimeError, EOFError) as error:
        raise CheckpointError(f"{path}: cannot be read safely ({error})") from None


def load_model_weights(model: nn.Module, directory: Path) -> None:
    """Copy the checkpoint's ``model.safetensors`` into ``model`` (same architecture)."""
    path = directory / WEIGHTS_FILE
    try:
        state = load_file(str(path))
    except (OSError, SafetensorError) as error:
        raise CheckpointError(f"{path}: cannot read model weights ({error})") from None
    try:
        missing, unexpected = model.load_state_dict(state, strict=False)
    except RuntimeError as error:
        raise CheckpointError(f"{path} does not fit the model: {error}") from None
    current = model.state_dict()
    loaded = {current[name].untyped_storage().data_ptr() for name in state if name in current}
    untied = [n for n in missing if current[n].untyped_storage().data_ptr() not in loaded]
    if unexpected or untied:
        raise CheckpointError(
            f"{path} does not fit the model: missing {untied[:5]}, unexpected {unexpected[:5]}"
        )
