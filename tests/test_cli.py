"""The ``kgmm`` command: help, graph stats/link/embed, exit code 2 on bad input."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from kgmm.cli.main import main

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "graphs" / "tiny.tsv"


def test_console_script_help_runs():
    done = subprocess.run(
        [sys.executable, "-m", "kgmm.cli.main", "graph", "embed", "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "--model" in done.stdout and "--dim" in done.stdout


def test_graph_stats_prints_counts(capsys):
    assert main(["graph", "stats", str(TINY)]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["entities"] >= 12 and stats["triples"] >= 20


def test_graph_link_prints_offsets_and_keys(capsys):
    text = "Fever and flu"
    assert main(["graph", "link", str(TINY), text]) == 0
    rows = [line.split("\t") for line in capsys.readouterr().out.strip().splitlines()]
    linked = {row[3] for row in rows}
    assert {"fever", "influenza"} <= linked
    for start, end, surface, *_ in rows:
        assert text[int(start) : int(end)] == surface


def test_bad_input_exits_2_with_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tr\tb\nc\tr\n")
    assert main(["graph", "stats", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "bad.tsv:2: expected 3 tab-separated columns" in err


def test_unknown_command_is_usage_error():
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", "frobnicate"])
    assert exit_info.value.code == 2


def test_graph_embed_writes_safetensors_and_metrics(tmp_path, capsys):
    out = tmp_path / "emb"
    code = main(
        [
            "graph",
            "embed",
            str(TINY),
            "--model",
            "distmult",
            "--dim",
            "16",
            "--epochs",
            "3",
            "--test",
            str(TINY),
            "--out",
            str(out),
        ]
    )
    assert code == 0
    assert (out / "embeddings.safetensors").exists()
    metrics = json.loads((out / "metrics.json").read_text())
    assert 0.0 < metrics["test"]["mrr"] <= 1.0


def test_demo_questions_split_by_entity_and_demo_runs(tmp_path, capsys):
    from kgmm import KnowledgeGraph
    from kgmm.cli.demo import entity_type_questions

    kg = KnowledgeGraph.load(TINY)
    train, test, labels = entity_type_questions(kg, seed=0)
    assert not {s["text"] for s in train} & {s["text"] for s in test}
    assert len(train) + len(test) == kg.num_entities and set(labels) >= {"Disease", "Drug"}
    assert main(["demo", "--graph", str(TINY), "--steps", "3", "--out", str(tmp_path)]) == 0
    results = json.loads((tmp_path / "demo_results.json").read_text())
    assert set(results["test_accuracy"]) == {"on", "off", "random"}
    assert (tmp_path / "model.safetensors").exists()
