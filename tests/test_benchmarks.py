"""The speed benchmarks run end to end in their ``--quick`` mode and write sane results.

No timing is asserted (the machine is shared); the JSON must hold every contender with a
positive speed and accuracies in [0, 1].
"""

from __future__ import annotations

import contextlib
import json
import sys
import threading

import pytest
import torch
from conftest import import_benchmark, shared_dataset

import kgmm
from kgmm.training import native_bf16


def test_train_speed_quick_reports_every_contender(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "train_speed.json"
    train_speed = import_benchmark("train_speed")
    levers = ["--levers", "peer2-worker"]
    # A model cast to bf16 trains minutes a step on a CPU without bf16 hardware.
    transformed = "bf16-weights" if native_bf16(torch.device("cpu")) else "no-grouping"
    scored = ["--accuracy-contenders", *train_speed.SCORED, transformed]
    train_speed.main(
        ["--quick", "--threads", "1", "--data-dir", str(data), "--out", str(out), *levers] + scored
    )
    result = json.loads(out.read_text())
    rows = {row["contender"]: row for row in result["rows"]}
    peer2_levers = {"lever: peer2-worker"}
    assert set(rows) == set(train_speed.CONTENDERS) | peer2_levers | {f"lever: {transformed}"}
    for name in peer2_levers:
        assert rows[name]["gflops_per_sample"] == rows["peer2_hf_trainer"]["gflops_per_sample"]
    for name, row in rows.items():
        assert row["samples_per_s"] > 0, name
        assert row["gflops_per_sample"] > 0, name
        assert 0 < row["mfu"] < 1, name
    assert rows["peer2_hf_trainer"]["ratio_to_peer2"] == pytest.approx(1.0)
    for name in ("peer2_hf_trainer", "kgmm_text", "kgmm_kg", f"lever: {transformed}"):
        assert 0 <= rows[name]["test_accuracy"] <= 1, name
    assert rows["peer1_tutorial"]["test_accuracy"] is None
    assert result["matmul_peak_flops"] >= result["fp32_matmul_peak_flops"] > 0
    assert result["matmul_peak_precision"] == (
        "bf16" if native_bf16(torch.device("cpu")) else "fp32"
    )
    assert result["matmul_rate_at_step_shapes"] > 0
    assert result["batch"]["kg"]["entities_per_sample"] > 0
    assert result["batch"]["text"]["entities_per_sample"] == 0


def test_train_speed_turns_reports_paired_ratios(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "train_speed.json"
    train_speed = import_benchmark("train_speed")
    train_speed.main(
        ["--quick", "--turns", "--no-accuracy", "--threads", "1", "--data-dir", str(data)]
        + ["--out", str(out), "--levers", "train-embeddings"]
    )
    rows = {row["contender"]: row for row in json.loads(out.read_text())["rows"]}
    assert set(rows) == set(train_speed.CONTENDERS) | {"lever: train-embeddings"}
    assert "turns" not in rows["peer1_tutorial"]  # too slow to take turns: timed on its own
    for name in ("kgmm_text", "kgmm_kg", "lever: train-embeddings"):
        row = rows[name]
        assert row["turns"]
        assert row["ratio_low"] <= row["ratio_to_peer2"] <= row["ratio_high"], name
    assert rows["peer2_hf_trainer"]["ratio_to_peer2"] == pytest.approx(1.0)
    lever = rows["lever: train-embeddings"]
    assert lever["versus"] == "kgmm_text"
    assert lever["it_low"] <= lever["ratio_to_it"] <= lever["it_high"]
    assert len(lever["step_seconds"]) == len(rows["kgmm_text"]["step_seconds"]) == 2


def test_train_speed_turns_refuses_levers_that_need_their_own_process():
    train_speed = import_benchmark("train_speed")
    with pytest.raises(SystemExit):
        train_speed.parse_args(["--turns", "--levers", "worker"])


def test_turns_give_each_contender_one_step_a_round_in_shuffled_orders():
    """Every round each contender still training takes exactly one step; the order is
    reshuffled between rounds; a finished contender drops out."""
    train_speed = import_benchmark("train_speed")
    turns = train_speed.Turns(["a", "b", "c"], torch.device("cpu"))
    events = []

    def contender(name, steps):
        turns.begin(name)
        for _ in range(steps):
            events.append(name)
            turns.end_step(name)
        turns.leave(name)

    steps = {"a": 2, "b": 6, "c": 6}
    threads = [threading.Thread(target=contender, args=item) for item in steps.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    rounds = [events[0:3], events[3:6], *(events[i : i + 2] for i in range(6, 14, 2))]
    assert [sorted(r) for r in rounds] == [["a", "b", "c"]] * 2 + [["b", "c"]] * 4
    assert len({tuple(r) for r in rounds}) > 2  # not the same order every round
    assert {name: len(turns.step_seconds[name]) for name in steps} == steps


def test_encoder_layer_shapes_cover_forward_and_both_gradients():
    """A layer's linears do 2*rows*(4*h*h + 2*h*i) FLOPs forward; the input and weight
    gradients each do as many again."""
    shapes = import_benchmark("speed_measures").encoder_layer_shapes(10, 4, 16)
    assert len(shapes) == 18
    forward = 2 * 10 * (4 * 4 * 4 + 2 * 4 * 16)
    assert sum(2 * m * k * n for m, k, n in shapes) == 3 * forward
    assert (10, 4, 16) in shapes and (4, 10, 16) in shapes and (10, 16, 4) in shapes
    inference = import_benchmark("speed_measures").encoder_layer_shapes(10, 4, 16, backward=False)
    assert inference == [(10, 4, 4)] * 4 + [(10, 4, 16), (10, 16, 4)]
    assert sum(2 * m * k * n for m, k, n in inference) == forward


def test_paired_ratio_is_the_ratio_of_summed_step_times():
    train_speed = import_benchmark("train_speed")
    ratio, low, high = train_speed.paired_ratio([2.0, 4.0, 6.0], [1.0, 2.0, 3.0])
    assert ratio == pytest.approx(2.0)
    assert low == pytest.approx(2.0) and high == pytest.approx(2.0)
    ratio, low, high = train_speed.paired_ratio([1.0, 3.0], [1.0, 1.0])
    assert ratio == pytest.approx(2.0)
    assert low == pytest.approx(1.0) and high == pytest.approx(3.0)


def test_step_profile_quick_sees_whose_dropout_draws_the_masks(tmp_path):
    """kgmm's recipe draws most masks in LaneDropout (torch's are left inside SDPA); peer 2
    draws all of them with torch's ``bernoulli_``."""
    data = shared_dataset("banking77")
    step_profile = import_benchmark("step_profile")
    calls = {}
    for contender in ("kgmm_text", "peer2_hf_trainer"):
        out = tmp_path / f"{contender}.json"
        step_profile.main(
            ["--quick", "--threads", "1", "--data-dir", str(data), "--out", str(out)]
            + ["--contender", contender]
        )
        result = json.loads(out.read_text())
        assert result["wall_ms_per_step"] > 0
        ops = {row["op"]: row["calls_per_step"] for row in result["rows"]}
        assert ops["aten::mm"] > 0, contender
        calls[contender] = (ops.get("aten::random_", 0), ops.get("aten::bernoulli_", 0))
    lanes, torch_masks = calls["kgmm_text"]
    assert lanes > torch_masks > 0
    assert calls["peer2_hf_trainer"][0] == 0 and calls["peer2_hf_trainer"][1] > lanes


def test_inference_quick_reports_every_variant(tmp_path):
    data = shared_dataset("banking77")
    out = tmp_path / "inference.json"
    import_benchmark("inference").main(
        ["--quick", "--threads", "1", "--data-dir", str(data), "--out", str(out)]
        + ["--test-samples", "16"]  # bf16 runs emulated on CPUs without bf16 hardware
    )
    rows = {row["variant"]: row for row in json.loads(out.read_text())["rows"]}
    unsorted = rows.pop("fp32 input order")  # fp32 on batches cut in the test set's order
    assert set(rows) == {"fp32", "bf16 autocast", "bf16 weights", "int8 dynamic"}
    for name, row in rows.items():
        assert 0 < row["p50_ms"] <= row["p99_ms"], name
        assert row["batch64_samples_per_s"] > 0, name
        assert 0 <= row["test_accuracy"] <= 1, name
    assert rows["fp32"]["speedup_vs_fp32"] == pytest.approx(1.0)
    assert rows["fp32"]["accuracy_change_points"] == 0
    assert unsorted["p50_ms"] is None and unsorted["batch64_samples_per_s"] > 0
    assert unsorted["test_accuracy"] == pytest.approx(rows["fp32"]["test_accuracy"])


def test_kg_embeddings_quick_reports_each_model_beside_the_published_numbers(tmp_path):
    data = shared_dataset("kg_umls_nations")
    out = tmp_path / "kge.json"
    import_benchmark("kg_embeddings").main(
        ["--quick", "--datasets", "nations", "--models", "distmult", "complex"]
        + ["--data-dir", str(data), "--out", str(out)]
    )
    result = json.loads(out.read_text())
    rows = {row["model"]: row for row in result["rows"]}
    assert list(rows) == ["distmult", "complex"]
    for row in rows.values():
        assert 0 < row["hits@1"] <= row["hits@3"] <= row["hits@10"] <= 1
        assert 0 < row["mrr"] <= 1 and row["best_epoch"] in (1, 2)
    assert rows["distmult"]["published_mrr"] == 0.7131  # Pu et al. 2022, PROVENANCE.md
    assert result["settings"]["quick"] and result["hardware"]["cpu_count"] > 0


def test_kg_embeddings_names_the_missing_split_file(tmp_path):
    (tmp_path / "umls").mkdir()
    (tmp_path / "umls" / "train.txt").write_text("a\tr\tb\n")
    with pytest.raises(kgmm.DataError, match=r"umls[/\\]valid\.txt.*not found"):
        import_benchmark("kg_embeddings").main(
            ["--datasets", "umls", "--data-dir", str(tmp_path), "--out", str(tmp_path / "o")]
        )


def test_kg_embeddings_pykeen_says_how_to_install_pykeen(tmp_path, monkeypatch):
    (tmp_path / "umls").mkdir()
    (tmp_path / "umls" / "train.txt").write_text("a\tr\tb\n")
    monkeypatch.setitem(sys.modules, "pykeen", None)  # import pykeen raises ImportError
    with pytest.raises(SystemExit, match=r"pip install -e '\.\[bench\]'"):
        import_benchmark("kg_embeddings_pykeen").main(["--data-dir", str(tmp_path)])


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


def test_matmul_precision_quick_rates_every_precision_and_names_the_choice(tmp_path):
    out = tmp_path / "matmul_precision.json"
    result = import_benchmark("matmul_precision").main(["--quick", "--out", str(out)])
    assert json.loads(out.read_text())["rows"] == result["rows"]
    assert [row["workload"] for row in result["rows"]] == [
        "128x128 square",
        "MiniLM layer, 16 tokens",
        "MiniLM layer forward, 16 tokens",
    ]
    for row in result["rows"]:
        assert row["fp32_gflops"] > 0 and row["bf16_gflops"] > 0
        assert row["bf16_over_fp32"] == pytest.approx(row["bf16_gflops"] / row["fp32_gflops"])
    *training, inference = result["rows"]
    assert all("int8_gops" not in row for row in training)  # dynamic int8 is for inference
    for int8 in ("int8", "int8_static"):
        assert inference[f"{int8}_over_fp32"] == pytest.approx(
            inference[f"{int8}_gops"] / inference["fp32_linear_gflops"]
        )
    assert result["native_bf16"] is native_bf16(torch.device("cpu"))


def test_fused_model_speed_times_knowledge_off_and_on_in_both_precisions(tmp_path):
    out = tmp_path / "fused.json"
    import_benchmark("fused_model_speed").main(
        ["--repeats", "1", "--batch-size", "2", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    assert [row["precision"] for row in result["rows"]] == ["fp32", "bf16"]
    for row in result["rows"]:
        assert row["text_only_ms"] > 0 and row["text_kg_ms"] > 0
    assert result["entities_per_sample"] > 0  # the sentences link to the bundled graph
    assert 0 < result["single_sample"]["median_ms"] <= result["single_sample"]["p90_ms"]


def test_graph_scale_loads_the_generated_graph_in_both_loaders(tmp_path):
    out = tmp_path / "graph.json"
    import_benchmark("graph_scale").main(
        ["--entities", "300", "--triples", "2000", "--queries", "20", "--out", str(out)]
    )
    result = json.loads(out.read_text())
    kgmm_row = result["kgmm"]
    assert kgmm_row["triples"] + kgmm_row["duplicates_dropped"] == 2000  # every line counted
    assert set(result) >= {"kgmm", "networkx", "config"}
    assert kgmm_row["neighbors_p50_ms"] <= kgmm_row["neighbors_p99_ms"]


def test_linker_throughput_quick_finds_the_planted_mentions(tmp_path):
    out = tmp_path / "linker.json"
    import_benchmark("linker_throughput").main(["--quick", "--out", str(out)])
    result = json.loads(out.read_text())
    assert result["aliases"] == 10_000 and result["characters"] >= 200_000
    assert result["mentions"] > 0 and result["characters_per_second"] > 0


def test_bf16_training_reports_both_precisions(tmp_path):
    out = tmp_path / "bf16.json"
    hardware = native_bf16(torch.device("cpu"))
    warns = pytest.warns(UserWarning, match="no bf16 matmul hardware")
    with contextlib.nullcontext() if hardware else warns:  # bf16=True without the hardware
        import_benchmark("bf16_training").main(
            ["--steps", "1", "--warmup", "1", "--repeats", "1", "--batch-size", "2"]
            + ["--threads", "1", "--out", str(out)]
        )
    result = json.loads(out.read_text())
    assert [row["precision"] for row in result["summary"]] == ["fp32", "bf16"]
    assert all(row["samples/s (median)"] > 0 for row in result["summary"])
    assert result["bf16_speedup"] > 0
