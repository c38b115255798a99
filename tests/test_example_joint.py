"""The three-head joint example: one model for medical QA, translation and recommendation."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from conftest import shared_dataset

import kgmm

REPO = Path(__file__).resolve().parents[1]
TASKS = ("qa", "mt", "rec")
NEEDED = (
    "pubmedqa_pqal",
    "multi30k",
    "lexicon_en_de",
    "kgrec_music_lastfm",
    "medkg_hetionet_nodes",
    "medkg_pharmacotherapydb",
    "medkg_hsdn_symptom_disease",
)


def load_example():
    spec = importlib.util.spec_from_file_location("joint", REPO / "examples/joint.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_dataset_folder_is_a_data_error(tmp_path):
    with pytest.raises(kgmm.DataError, match="dataset folder not found"):
        load_example().main(["--quick", "--datasets", str(tmp_path)])


def test_step_budgets_one_number_or_per_task():
    example = load_example()
    budgets = example.step_budgets
    assert budgets(["300", "mt=1500"]) == {"qa": 300, "mt": 1500, "rec": 300}
    assert budgets(["mt=1500"], 16) == {"qa": 16, "mt": 1500, "rec": 16}
    assert example.parse_args(["--quick"]).steps_per_task == dict.fromkeys(TASKS, 16)
    quick_two = example.parse_args(["--quick", "--steps-per-task", "2"])
    assert quick_two.steps_per_task == dict.fromkeys(TASKS, 2)  # a given budget wins
    with pytest.raises(kgmm.ConfigError, match="unknown task 'de'"):
        budgets(["de=5"])
    with pytest.raises(kgmm.ConfigError, match="'mt=0' is not N or TASK=N"):
        budgets(["mt=0"])


def test_two_steps_per_task_train_one_model_and_test_every_head(tmp_path):
    """The joint run end to end in about a minute (quality: the next test, ``-m data``)."""
    root = shared_dataset(NEEDED[0]).parent
    for name in NEEDED[1:]:
        shared_dataset(name)
    summary = load_example().main(
        ["--quick", "--steps-per-task", "2", "--runs", "joint"]
        + ["--datasets", str(root), "--out", str(tmp_path / "run")]
    )
    (joint,) = summary["runs"]
    assert joint["steps"] == 6 and joint["steps_per_task"] == dict.fromkeys(TASKS, 2)
    metrics = joint["metrics"]
    for name in ("qa/accuracy", "qa/macro_f1", "mt/bleu", "mt/tokenized_bleu", "rec/auc"):
        assert name in metrics, name
    assert (tmp_path / "run" / "joint" / "results.json").is_file()


@pytest.mark.data  # about 4 min at one thread on a CPU without bf16 matmul hardware
def test_quick_joint_run_shares_parameters_and_beats_trivial_baselines(tmp_path):
    root = shared_dataset(NEEDED[0]).parent
    for name in NEEDED[1:]:
        shared_dataset(name)
    example = load_example()
    summary = example.main(
        ["--quick", "--datasets", str(root), "--out", str(tmp_path / "run"), "--runs", "joint"]
    )
    parameters = summary["parameters"]
    singles = sum(parameters[f"single-{task}"] for task in ("qa", "mt", "rec"))
    assert parameters["joint"] < 0.5 * singles  # one encoder and fusion instead of three
    (joint,) = summary["runs"]
    assert joint["parameters"] == parameters["joint"]
    assert joint["steps"] == 3 * example.QUICK_STEPS  # each single-task model gets a third
    assert joint["steps_per_task"] == dict.fromkeys(TASKS, example.QUICK_STEPS)
    metrics = joint["metrics"]
    assert metrics["rec/auc"] > 0.5  # a random ranking scores 0.5
    assert metrics["mt/bleu"] > 0  # an empty translation scores 0
    assert "qa/macro_f1" in metrics  # the QA head was tested too
    assert (tmp_path / "run" / "results.json").is_file()
    assert (tmp_path / "run" / "joint" / "results.json").is_file()  # written as it finished
