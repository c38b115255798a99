"""PubMedQA and Hetionet loaders, and the medical QA example's quick mode."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import shared_dataset

from kgmm.data.hetionet import load_hetionet_graph
from kgmm.data.pubmedqa import load_pubmedqa
from kgmm.errors import DataError, GraphFormatError

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "medical_qa.py"

NODES = (
    "id\tname\tkind\n"
    "Disease::DOID:1\tinfluenza\tDisease\n"
    "Compound::DB1\toseltamivir\tCompound\n"
    "Gene::7\tCAT\tGene\n"
)
EDGES = (
    "head_id\thead_name\thead_kind\trelation\ttail_id\ttail_name\ttail_kind\n"
    "Compound::DB1\toseltamivir\tCompound\ttreats\tDisease::DOID:1\tinfluenza\tDisease\n"
    "Disease::DOID:1\tinfluenza\tDisease\tpresents\tSymptom::D5\tFever\tSymptom\n"
    "Gene::7\tCAT\tGene\tassociates\tDisease::DOID:1\tinfluenza\tDisease\n"
)


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_hetionet_graph_keeps_kinds_and_adds_named_edge_ends(tmp_path):
    nodes, edges = write(tmp_path / "nodes.tsv", NODES), write(tmp_path / "edges.tsv", EDGES)
    kg = load_hetionet_graph(nodes, [edges], kinds={"Disease", "Compound", "Symptom"})
    assert (kg.num_entities, kg.num_relations, kg.num_triples) == (3, 2, 2)
    fever = kg.entity(kg.entity_id("Symptom::D5"))
    assert (fever.name, fever.type) == ("Fever", "Symptom")
    flu = kg.entity_id("Disease::DOID:1")
    assert kg.entity(flu).name == "influenza"
    names = {kg.entity(i).name for i in kg.neighbors([flu], hops=1)}
    assert names == {"influenza", "oseltamivir", "Fever"}
    assert load_hetionet_graph(nodes, [edges]).num_triples == 3


def test_hetionet_edge_to_an_unknown_unnamed_id_names_file_and_line(tmp_path):
    nodes = write(tmp_path / "nodes.tsv", NODES)
    edges = write(tmp_path / "edges.tsv", "head_id\trelation\ttail_id\nGene::7\tx\tGene::99\n")
    with pytest.raises(GraphFormatError, match=r"edges.tsv:2: id 'Gene::99' is not in"):
        load_hetionet_graph(nodes, [edges])


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("id\tname\n", r"nodes.tsv:1: header lacks columns \['kind'\]"),
        ("id\tname\tkind\nA::1\tx\n", r"nodes.tsv:2: expected 3 tab-separated columns, got 2"),
        ("", r"nodes.tsv: empty file"),
    ],
)
def test_hetionet_malformed_node_table(tmp_path, text, message):
    with pytest.raises(GraphFormatError, match=message):
        load_hetionet_graph(write(tmp_path / "nodes.tsv", text))


def pqal(pmid: str, answer: str) -> dict:
    return {
        "QUESTION": f"Does {pmid} work?",
        "CONTEXTS": ["Background.", "Results."],
        "LABELS": ["BACKGROUND", "RESULTS"],
        "final_decision": answer,
    }


def test_pubmedqa_splits_by_ground_truth(tmp_path):
    questions = {"1": pqal("1", "yes"), "2": pqal("2", "no"), "3": pqal("3", "maybe")}
    write(tmp_path / "ori_pqal.json", json.dumps(questions))
    write(tmp_path / "test_ground_truth.json", json.dumps({"2": "no"}))
    train_dev, test = load_pubmedqa(tmp_path)
    assert [s["id"] for s in train_dev] == ["1", "3"]
    assert test == [{"id": "2", "text": ("Does 2 work?", "Background. Results."), "answer": "no"}]


def test_pubmedqa_keeps_the_long_answer_apart_from_the_context(tmp_path):
    entry = {**pqal("1", "yes"), "LONG_ANSWER": "It works."}
    write(tmp_path / "ori_pqal.json", json.dumps({"1": entry, "2": pqal("2", "no")}))
    write(tmp_path / "test_ground_truth.json", json.dumps({"2": "no"}))
    (sample,), _ = load_pubmedqa(tmp_path)
    assert sample["long_answer"] == "It works."
    assert "It works." not in sample["text"][1]


@pytest.mark.parametrize(
    ("questions", "truth", "message"),
    [
        ('{"1": {', '{"1": "yes"}', r"ori_pqal.json:1: invalid JSON"),
        (
            json.dumps({"1": {"QUESTION": "q", "CONTEXTS": "c", "final_decision": "yes"}}),
            '{"1": "yes"}',
            r"ori_pqal.json: PMID 1: field 'CONTEXTS' must be a list",
        ),
        (
            json.dumps({"1": pqal("1", "yes")}),
            '{"9": "yes"}',
            r"test_ground_truth.json: PMID 9 is not in ori_pqal.json",
        ),
        (json.dumps({"1": pqal("1", "yes")}), "[]", r"ground_truth.json: expected a non-empty"),
        (
            json.dumps({"1": {**pqal("1", "yes"), "LONG_ANSWER": ["a"]}}),
            '{"1": "yes"}',
            r"ori_pqal.json: PMID 1: field 'LONG_ANSWER' must be a string",
        ),
    ],
)
def test_pubmedqa_malformed_files(tmp_path, questions, truth, message):
    write(tmp_path / "ori_pqal.json", questions)
    write(tmp_path / "test_ground_truth.json", truth)
    with pytest.raises(DataError, match=message):
        load_pubmedqa(tmp_path)


def test_pubmedqa_missing_folder(tmp_path):
    with pytest.raises(DataError, match="PubMedQA folder not found"):
        load_pubmedqa(tmp_path / "absent")


def load_example():
    spec = importlib.util.spec_from_file_location("medical_qa", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


def test_one_epoch_run_trains_selects_and_tests(tmp_path):
    """The whole example in about a minute: one epoch on (question, context), the dev
    selection, the reloaded best model on the test slice (quality: the next test)."""
    data = shared_dataset("pubmedqa_pqal")
    results = load_example().main(
        ["--quick", "--epochs", "1", "--conclusion-epochs", "0", "--data-dir", str(data)]
        + ["--kg-dir", str(data.parent), "--out", str(tmp_path)]
    )
    (run,) = results["runs"]
    assert results["test_questions"] == 64
    assert run["best_epoch"] == 1 and len(run["history"]) == 1
    assert run["conclusion_phase"] == []
    low, high = run["test_accuracy_ci95"]
    assert low <= run["test_accuracy"] <= high and 0 <= run["test_macro_f1"] <= 1
    assert (tmp_path / "knowledge-on" / "context" / "best" / "model.safetensors").is_file()


@pytest.mark.data  # about 4 min at one thread on a CPU without bf16 matmul hardware
def test_quick_run_beats_the_majority_macro_f1(tmp_path):
    data = shared_dataset("pubmedqa_pqal")
    results = load_example().main(
        ["--quick", "--data-dir", str(data), "--kg-dir", str(data.parent), "--out", str(tmp_path)]
    )
    run = results["runs"][0]
    assert results["test_questions"] == 64
    assert run["test_macro_f1"] > results["majority_baseline"]["macro_f1"]
    assert json.loads((tmp_path / "results.json").read_text())["seed"] == 0
