"""Parallel-corpus and lexicon loaders, source-side linking, and the Multi30k example."""

from __future__ import annotations

import gzip
import importlib.util
import json
from collections import Counter
from pathlib import Path

import pytest
from conftest import shared_dataset

import kgmm
from kgmm.data import lexicon_graph, load_parallel, parallel_splits, read_lexicon, vocabulary

REPO = Path(__file__).resolve().parents[1]


def load_example():
    spec = importlib.util.spec_from_file_location("translation", REPO / "examples/translation.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, lines: list[str], zipped: bool = False) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(f"{line}\n" for line in lines)
    if zipped:
        with gzip.open(path, "wt", encoding="utf-8") as handle:
            handle.write(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def test_parallel_splits_pair_lines_from_plain_and_gzipped_files(tmp_path):
    write(tmp_path / "raw" / "train.en.gz", ["A dog runs.", "Two men."], zipped=True)
    write(tmp_path / "raw" / "train.de.gz", ["Ein Hund rennt.", "Zwei Männer."], zipped=True)
    write(tmp_path / "val.en", ["A cat."])
    write(tmp_path / "val.de", ["Eine Katze."])
    write(tmp_path / "test.en", ["Only English."])
    assert parallel_splits(tmp_path, "en", "de") == ["train", "val"]
    assert load_parallel(tmp_path, "train", "en", "de") == [
        {"text": "A dog runs.", "target": "Ein Hund rennt."},
        {"text": "Two men.", "target": "Zwei Männer."},
    ]
    assert load_parallel(tmp_path, "val", "en", "de") == [
        {"text": "A cat.", "target": "Eine Katze."}
    ]


def test_parallel_errors_name_the_files_and_lines(tmp_path):
    write(tmp_path / "a.en", ["one", "two"])
    write(tmp_path / "a.de", ["eins"])
    with pytest.raises(kgmm.DataError, match=r"a\.en has 2 sentences but .*a\.de has 1"):
        load_parallel(tmp_path, "a", "en", "de")
    write(tmp_path / "b.en", ["one", "", "three"])
    write(tmp_path / "b.de", ["eins", "zwei", "drei"])
    with pytest.raises(kgmm.DataError, match=r"b\.en:2: empty sentence"):
        load_parallel(tmp_path, "b", "en", "de")
    with pytest.raises(kgmm.DataError, match=r"no 'fr' file for split 'a'"):
        load_parallel(tmp_path, "a", "en", "fr")


def test_lexicon_graph_types_languages_skips_header_and_prunes_unlinkable_rows(tmp_path):
    muse = write(tmp_path / "muse.tsv", ["en\tde", "dog\thund", "man\tmann", "cat\tkatze"])
    wiki = write(tmp_path / "wiki.txt", ["dog\tHund", "ice cream\tEis", "man\tMann"])
    assert read_lexicon(muse, "en", "de")[0] == ("dog", "hund")
    kg = lexicon_graph([muse, wiki], "en", "de", vocabulary(["A man eats ice cream."]))
    keys = sorted(e.key for e in kg.entities())
    assert keys == ["de:Eis", "de:Mann", "de:mann", "en:ice cream", "en:man"]
    assert {e.type for e in kg.entities() if e.key.startswith("de:")} == {"de"}
    assert kg.relations == ["translation"] and kg.num_triples == 3

    linker = kgmm.EntityLinker(kg, types=["en"])
    linked = [kg.entity(m.entity_id).key for m in linker.link("Mann, the man, eats ice cream")]
    assert linked == ["en:man", "en:ice cream"]  # the German word "Mann" is not linked
    assert len(kgmm.EntityLinker(kg).link("Mann")) == 1  # without the type filter it is
    with pytest.raises(kgmm.ConfigError, match="types is empty"):
        kgmm.EntityLinker(kg, types=[])

    bad = write(tmp_path / "bad.tsv", ["dog\thund", "cat"])
    with pytest.raises(kgmm.GraphFormatError, match=r"bad\.tsv:2: expected 'source<TAB>target'"):
        read_lexicon(bad, "en", "de")


def test_lexicon_accuracy_counts_expected_words_and_rare_ones(tmp_path):
    lexicon = write(tmp_path / "l.tsv", ["dog\tHund", "cat\tKatze", "man\tMann"])
    kg = lexicon_graph([lexicon], "en", "de")
    linker = kgmm.EntityLinker(kg, types=["en"])
    samples = [
        {"text": "a dog and a cat", "target": "ein Hund und eine Katze"},
        {"text": "a man", "target": "ein Typ"},  # the lexicon word is not in the reference
    ]
    hypotheses = ["ein hund und ein Tier", "ein Mann"]
    counts = Counter({"dog": 100, "cat": 2})
    result = load_example().lexicon_accuracy(kg, linker, "de", samples, hypotheses, counts)
    assert result == {
        "all_accuracy": 0.5,
        "rare_accuracy": 0.0,
        "all_words": 2,
        "rare_words": 1,
    }


def test_missing_data_folder_is_a_data_error(tmp_path):
    with pytest.raises(kgmm.DataError, match="parallel-corpus folder not found"):
        load_example().main(["--quick", "--data-dir", str(tmp_path / "nope")])


def test_two_step_run_trains_saves_decodes_and_scores_every_test_split(tmp_path):
    """The whole example in about a minute: train, keep the best checkpoint, reload it,
    decode the test split and score it (quality is the next test's, under ``-m data``)."""
    data = shared_dataset("multi30k")
    shared_dataset("lexicon_en_de")
    out = tmp_path / "run"
    summary = load_example().main(
        ["--quick", "--stop-after-steps", "2", "--beam-size", "1"]
        + ["--data-dir", str(data), "--out", str(out)]
    )
    (run,) = summary["runs"]
    assert run["steps"] == 2 and run["knowledge"] == "on"
    scores = run["tests"]["test_2016_flickr"]
    assert "tok:13a" in scores["sacrebleu_signature"] and 0 <= scores["chrf"] <= 100
    outputs = (out / "knowledge-on" / "test_2016_flickr.de.txt").read_text().split("\n")
    assert len(outputs) == summary["test_pairs"]["test_2016_flickr"] + 1  # a final newline
    assert (out / "knowledge-on" / "best" / "model.safetensors").is_file()
    assert json.loads((out / "results.json").read_text())["pair"] == "en-de"


@pytest.mark.data  # about 4 min at one thread on a CPU without bf16 matmul hardware
def test_quick_run_translates_better_than_an_empty_output(tmp_path):
    data = shared_dataset("multi30k")
    shared_dataset("lexicon_en_de")
    summary = load_example().main(
        ["--quick", "--data-dir", str(data), "--out", str(tmp_path / "run")]
    )
    (run,) = summary["runs"]
    scores = run["tests"]["test_2016_flickr"]
    assert scores["sacrebleu"] > 0 and scores["chrf"] > 10  # an empty output scores 0 and 0
    assert "tok:13a" in scores["sacrebleu_signature"]
    assert scores["lexicon_words"]["all_words"] > 0
    assert run["curve"] and run["curve"][-1]["step"] == run["steps"]
    saved = json.loads((tmp_path / "run" / "results.json").read_text())
    assert saved["pair"] == "en-de" and saved["test_pairs"] == {"test_2016_flickr": 100}
