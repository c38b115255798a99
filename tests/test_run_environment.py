"""Results files say which commit ran, whether the working tree differed from it, and on
which hardware."""

from __future__ import annotations

import subprocess

import torch

from kgmm.training import native_bf16
from kgmm.training.run_environment import git_commit, git_modified, run_environment


def git(folder, *arguments):
    subprocess.run(
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", *arguments],
        cwd=folder,
        check=True,
        capture_output=True,
    )


def test_git_modified_lists_changed_tracked_files_only(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "model.py").write_text("a = 1\n")
    git(tmp_path, "add", "model.py")
    git(tmp_path, "commit", "-q", "-m", "first")
    assert len(git_commit(tmp_path)) == 40
    assert git_modified(tmp_path) == []
    (tmp_path / "model.py").write_text("a = 2\n")
    (tmp_path / "untracked.txt").write_text("scratch\n")
    assert git_modified(tmp_path) == ["model.py"]


def test_outside_a_checkout_both_are_none(tmp_path):
    assert git_commit(tmp_path) is None
    assert git_modified(tmp_path) is None


def test_hardware_names_the_cpu_and_whether_it_has_bf16_hardware():
    hardware = run_environment()["hardware"]
    assert hardware["cpu"] and isinstance(hardware["cpu"], str)
    assert hardware["cpu_capability"] == torch.backends.cpu.get_cpu_capability()
    assert hardware["cpu_native_bf16"] is native_bf16(torch.device("cpu"))
