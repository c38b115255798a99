"""The speed benchmarks run end to end in their ``--quick`` mode and write sane results.

No timing is asserted (the machine is shared); the JSON must hold every contender with a
positive speed and accuracies in [0, 1].
"""

from __future__ import annotations

import json

import pytest
from conftest import import_benchmark, shared_dataset


def test_train_speed_quick_reports_every_contender(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "train_speed.json"
    train_speed = import_benchmark("train_speed")
    levers = ["--levers", "peer2-worker", "peer2-2-threads"]
    train_speed.main(
        ["--quick", "--threads", "1", "--data-dir", str(data), "--out", str(out), *levers]
    )
    result = json.loads(out.read_text())
    rows = {row["contender"]: row for row in result["rows"]}
    peer2_levers = {"lever: peer2-worker", "lever: peer2-2-threads"}
    assert set(rows) == set(train_speed.CONTENDERS) | peer2_levers
    for name in peer2_levers:
        assert rows[name]["gflops_per_sample"] == rows["peer2_hf_trainer"]["gflops_per_sample"]
    for name, row in rows.items():
        assert row["samples_per_s"] > 0, name
        assert row["gflops_per_sample"] > 0, name
        assert 0 < row["mfu"] < 1, name
    assert rows["peer2_hf_trainer"]["ratio_to_peer2"] == pytest.approx(1.0)
    for name in ("peer2_hf_trainer", "kgmm_text", "kgmm_kg"):
        assert 0 <= rows[name]["test_accuracy"] <= 1, name
    assert rows["peer1_tutorial"]["test_accuracy"] is None
    assert result["bf16_matmul_peak_flops"] > 0
    assert result["batch"]["kg"]["entities_per_sample"] > 0
    assert result["batch"]["text"]["entities_per_sample"] == 0


def test_inference_quick_reports_every_variant(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "inference.json"
    import_benchmark("inference").main(
        ["--quick", "--threads", "1", "--data-dir", str(data), "--out", str(out)]
    )
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == {"fp32", "bf16 autocast", "bf16 weights", "int8 dynamic"}
    for name, row in rows.items():
        assert 0 < row["p50_ms"] <= row["p99_ms"], name
        assert row["batch64_samples_per_s"] > 0, name
        assert 0 <= row["test_accuracy"] <= 1, name
    assert rows["fp32"]["speedup_vs_fp32"] == pytest.approx(1.0)
    assert rows["fp32"]["accuracy_change_points"] == 0


def test_kg_embeddings_pykeen_quick_compares_both_libraries(tmp_path):
    pytest.importorskip("pykeen")
    data = shared_dataset("kg_umls_nations")
    out = tmp_path / "kge.json"
    import_benchmark("kg_embeddings_pykeen").main(
        ["--quick", "--models", "complex", "--data-dir", str(data), "--out", str(out)]
    )
    rows = json.loads(out.read_text())["rows"]
    assert [(r["library"], r["model"]) for r in rows] == [
        ("kgmm", "complex"),
        ("pykeen", "complex"),
    ]
    for row in rows:
        assert row["triples_per_s"] > 0
        assert 0 < row["mrr"] <= 1 and 0 <= row["hits@10"] <= 1
    assert rows[0]["speed_vs_pykeen"] > 0
