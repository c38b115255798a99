"""The intent CSV loader, few-shot sampling, the banking graph and the BANKING77 example."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
from conftest import shared_dataset

import kgmm
from kgmm.data.intents import few_shot, load_intent_csv, stratified_split

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def test_columns_are_detected_from_common_names(tmp_path):
    path = write(tmp_path / "a.csv", "id,Utterance,intent\n1,where is my card,card_arrival\n")
    assert load_intent_csv(path) == [{"text": "where is my card", "label": "card_arrival"}]


def test_named_columns_and_quoted_multiline_text(tmp_path):
    path = write(tmp_path / "a.csv", 'msg,tag\n"line one\nline two, still text",refund\nhi,greet\n')
    samples = load_intent_csv(path, text_column="msg", label_column="tag")
    assert samples == [
        {"text": "line one\nline two, still text", "label": "refund"},
        {"text": "hi", "label": "greet"},
    ]


def test_malformed_row_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.csv", 'text,label\n"two\nlines",a\nok,b\nextra,c,field\n')
    with pytest.raises(kgmm.DataError, match=r"bad\.csv:5: expected 2 comma-separated fields"):
        load_intent_csv(path)


def test_empty_label_names_file_and_line(tmp_path):
    path = write(tmp_path / "bad.csv", "text,category\nhello,greet\nbye,\n")
    with pytest.raises(kgmm.DataError, match=r"bad\.csv:3: empty label in column 'category'"):
        load_intent_csv(path)


def test_missing_column_and_missing_file_are_explained(tmp_path):
    path = write(tmp_path / "a.csv", "sentence_id,value\n1,2\n")
    with pytest.raises(kgmm.DataError, match="cannot find the text column"):
        load_intent_csv(path)
    with pytest.raises(kgmm.DataError, match="no label column 'intent'"):
        load_intent_csv(write(tmp_path / "b.csv", "text,label\nx,y\n"), label_column="intent")
    with pytest.raises(kgmm.DataError, match="not found"):
        load_intent_csv(tmp_path / "absent.csv")


SAMPLES = [{"text": f"{label} {i}", "label": label} for label in "abc" for i in range(10)]


def test_few_shot_takes_n_per_label_deterministically():
    chosen = few_shot(SAMPLES, 3, seed=1)
    assert sorted(s["label"] for s in chosen) == ["a"] * 3 + ["b"] * 3 + ["c"] * 3
    assert chosen == few_shot(SAMPLES, 3, seed=1)
    assert chosen != few_shot(SAMPLES, 3, seed=2)
    with pytest.raises(kgmm.DataError, match="fewer samples"):
        few_shot(SAMPLES, 11)


def test_stratified_split_holds_out_each_label():
    rest, held = stratified_split(SAMPLES, 0.2, seed=0)
    assert sorted(s["label"] for s in held) == ["a", "a", "b", "b", "c", "c"]
    assert len(rest) == 24 and not {s["text"] for s in rest} & {s["text"] for s in held}
    assert (rest, held) == stratified_split(SAMPLES, 0.2, seed=0)


def test_banking_graph_links_support_requests():
    kg = kgmm.KnowledgeGraph.load(REPO / "graphs" / "banking.tsv")
    assert 100 <= kg.num_entities <= 250
    linker = kgmm.EntityLinker(kg)
    text = "My card payment was declined and I was charged twice"
    names = {kg.entity(m.entity_id).name for m in linker.link(text)}
    assert {"Card payment", "Declined", "Charged twice"} <= names


def load_example():
    spec = importlib.util.spec_from_file_location(
        "customer_support", REPO / "examples" / "customer_support.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_data_folder_is_a_data_error(tmp_path):
    with pytest.raises(kgmm.DataError, match="BANKING77 folder not found"):
        load_example().main(["--quick", "--data-dir", str(tmp_path / "nope")])


def test_quick_run_beats_the_majority_baseline(tmp_path):
    data = shared_dataset("banking77")
    summary = load_example().main(
        ["--quick", "--data-dir", str(data), "--out", str(tmp_path / "run")]
    )
    run = summary["runs"][0]
    assert run["knowledge"] == "on"
    assert run["test_accuracy"] > summary["majority_baseline"] + 0.3
    assert json.loads((tmp_path / "run" / "results.json").read_text())["seed"] == 0
