"""KGCN-family loaders, the KGCN protocol, the head's KG options and the Last.FM example."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import shared_dataset

import kgmm
from kgmm.data import kgcn_protocol, load_kgrec, load_kgrec_preprocessed, load_kgrec_raw
from kgmm.fusion.output import FusionOutput
from kgmm.heads import RecommendationHead

REPO = Path(__file__).resolve().parents[1]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def raw_release(folder: Path, log: str) -> Path:
    """Items a..l map to entities 0..11; entity 0 and 1 share a genre, 2 has an origin."""
    folder.mkdir(exist_ok=True)
    write(folder / "user_artists.dat", log)
    write(
        folder / "item_index2entity_id.txt",
        "".join(f"{c}\t{i}\n" for i, c in enumerate("abcdefghijkl")),
    )
    write(folder / "kg.txt", "0\tgenre\t100\n1\tgenre\t100\n2\torigin\t200\n")
    return folder


# Users u1..u4 with 5, 3, 4 and 3 listens of mapped items; "zz" is not in the item map.
LOG = (
    "userID\tartistID\tweight\n"
    + "".join(f"u1\t{c}\t{w}\n" for c, w in zip("abcde", (50, 40, 30, 20, 10)))
    + "u2\tzz\t7\n"
    + "".join(f"u2\t{c}\t5\n" for c in "afg")
    + "".join(f"u3\t{c}\t3\n" for c in "bhij")
    + "".join(f"u4\t{c}\t1\n" for c in "ckl")
)


def test_raw_release_numbers_users_and_items_and_merges_items_into_the_graph(tmp_path):
    folder = raw_release(tmp_path, LOG)
    data = load_kgrec_raw(
        folder / "user_artists.dat", folder / "item_index2entity_id.txt", folder / "kg.txt"
    )
    assert (data.num_users, data.num_items, data.negatives_included) == (4, 12, False)
    assert len(data.ratings) == 15 and data.ratings[:, 2].tolist() == [1] * 15
    assert data.ratings[:6].tolist() == [[0, i, 1] for i in range(5)] + [[1, 0, 1]]
    kg = data.kg
    assert (kg.num_entities, kg.num_relations, kg.num_triples) == (14, 2, 3)
    assert [kg.entity(e).key for e in data.item_entities] == [str(i) for i in range(12)]
    genre = kg.entity_id("100")
    assert set(kg.neighbors([data.item_entities[0]], hops=1)) == {data.item_entities[0], genre}
    assert kg.degree(data.item_entities[11]) == 0  # an item without triples is still an entity


def test_kgcn_protocol_on_a_hand_made_log(tmp_path):
    data = load_kgrec(raw_release(tmp_path, LOG))
    splits = kgcn_protocol(data, seed=3)
    rows = np.concatenate([splits.train, splits.valid, splits.test])
    assert (len(splits.train), len(splits.valid), len(splits.test)) == (18, 6, 6)
    listened = {(u, i) for u, i, _ in data.ratings.tolist()}
    for user in range(data.num_users):
        mine = rows[rows[:, 0] == user]
        positives = {i for _, i, y in mine.tolist() if y == 1}
        negatives = [i for _, i, y in mine.tolist() if y == 0]
        assert positives == {i for u, i in listened if u == user}
        assert len(negatives) == len(positives) == len(set(negatives))
        assert not set(negatives) & positives
    pairs = {
        part: {(u, i) for u, i, _ in getattr(splits, part).tolist()}
        for part in ("train", "valid", "test")
    }
    test_positives = {(u, i) for u, i, y in splits.test.tolist() if y == 1}
    assert not test_positives & (pairs["train"] | pairs["valid"])
    assert len(pairs["train"] | pairs["valid"] | pairs["test"]) == len(rows)
    again = kgcn_protocol(data, seed=3)
    assert np.array_equal(again.test, splits.test)
    assert not np.array_equal(kgcn_protocol(data, seed=4).test, splits.test)


def test_ratings_below_the_threshold_are_neither_positives_nor_negatives(tmp_path):
    folder = raw_release(tmp_path, "u1,a,5\nu1,b,2\nu1,c,4\n")
    data = load_kgrec_raw(
        folder / "user_artists.dat",
        folder / "item_index2entity_id.txt",
        folder / "kg.txt",
        threshold=4,
    )
    assert data.ratings.tolist() == [[0, 0, 1], [0, 1, 0], [0, 2, 1]]
    rows = np.concatenate(list(vars(kgcn_protocol(data, seed=0)).values()))
    assert sorted(map(tuple, rows[rows[:, 2] == 1].tolist())) == [(0, 0, 1), (0, 2, 1)]
    assert (rows[:, 2] == 0).sum() == 2 and 1 not in rows[:, 1]


def test_preprocessed_form_keeps_its_negatives(tmp_path):
    write(tmp_path / "ratings_final.txt", "0\t0\t1\n0\t3\t0\n1\t2\t1\n1\t1\t0\n2\t0\t1\n")
    write(tmp_path / "kg_final.txt", "0\t0\t4\n2\t1\t4\n")
    data = load_kgrec(tmp_path)
    assert (data.num_users, data.num_items, data.negatives_included) == (3, 4, True)
    assert [data.kg.entity(e).key for e in data.item_entities] == ["0", "1", "2", "3"]
    assert data.kg.num_entities == 5 and data.kg.num_triples == 2
    splits = kgcn_protocol(data, seed=0)
    rows = np.concatenate([splits.train, splits.valid, splits.test])
    assert sorted(map(tuple, rows.tolist())) == sorted(map(tuple, data.ratings.tolist()))


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        (
            "user_artists.dat",
            "user\titem\tweight\nu1\ta\t3\nu2\n",
            r"user_artists\.dat:3: expected",
        ),
        ("user_artists.dat", "u1\ta\t3\nu2\tb\tmany\n", r"user_artists\.dat:2: rating 'many'"),
        ("item_index2entity_id.txt", "a\t0\nb\t1\t9\n", r"item_index2entity_id\.txt:2: expected 2"),
        ("kg.txt", "0\tgenre\t100\n\n1\tgenre\n", r"kg\.txt:3: expected 3 fields"),
    ],
)
def test_malformed_raw_lines_name_file_and_line(tmp_path, name, text, message):
    folder = raw_release(tmp_path, "u1\ta\t3\n")
    write(folder / name, text)
    with pytest.raises(kgmm.DataError, match=message):
        load_kgrec(folder)


def test_malformed_preprocessed_lines_name_file_and_line(tmp_path):
    kg = write(tmp_path / "kg_final.txt", "0 0 1\n")
    bad_label = write(tmp_path / "ratings_final.txt", "0\t0\t1\n0\t1\t2\n")
    with pytest.raises(kgmm.DataError, match=r"ratings_final\.txt:2: expected ids >= 0 and a 0/1"):
        load_kgrec_preprocessed(bad_label, kg)
    not_int = write(tmp_path / "r2.txt", "0\tx\t1\n")
    with pytest.raises(kgmm.DataError, match=r"r2\.txt:1: user, item and label must be integers"):
        load_kgrec_preprocessed(not_int, kg)
    (tmp_path / "other").mkdir()
    with pytest.raises(kgmm.DataError, match="no ratings_final.txt"):
        load_kgrec(tmp_path / "other")
    with pytest.raises(kgmm.DataError, match="folder not found"):
        load_kgrec(tmp_path / "absent")


# --------------------------------------------------------------------------- head options
def test_items_bring_their_entity_and_bpr_copies_keep_shared_fields():
    head = RecommendationHead(8, 2, 3, item_entity_ids=[5, -1, 7], loss="bpr", item_fields=[])
    rows = head.expand_samples([{"text": "q", "user": 0, "item": 0, "neg_item": 2}])
    assert rows == [
        {"text": "q", "user": 0, "item": 0, "neg_item": 2, "entities": [5]},
        {"text": "q", "user": 0, "item": 2, "neg_item": 2, "entities": [7]},
    ]
    # Scoring samples (no neg_item) are not copied; an item without entity gets none.
    assert head.expand_samples([{"text": "q", "user": 1, "item": 1}]) == [
        {"text": "q", "user": 1, "item": 1}
    ]


def fused_rows(batch: int, dim: int) -> FusionOutput:
    """A fusion output with no entities and a zero pooled vector (id embeddings only)."""
    empty = torch.zeros(batch, 0, dtype=torch.long)
    return FusionOutput(
        tokens=torch.zeros(batch, 1, dim),
        mask=torch.ones(batch, 1, dtype=torch.bool),
        pooled=torch.zeros(batch, dim),
        modality_slices={"text": slice(0, 1)},
        entity_ids=empty,
        entity_mask=empty.bool(),
        entity_states=torch.zeros(batch, 0, dim),
        entity_attention=torch.zeros(batch, 0),
        entity_source=empty,
    )


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_l2_adds_the_squared_norms_of_the_batch_embeddings(loss):
    torch.manual_seed(0)
    plain = RecommendationHead(8, 2, 3, loss=loss)
    regularised = RecommendationHead(8, 2, 3, loss=loss, l2=0.5)
    regularised.load_state_dict(plain.state_dict())
    samples = [
        {"user": 0, "item": 2, "neg_item": 1, "label": 1},
        {"user": 1, "item": 0, "neg_item": 2, "label": 0},
    ]
    targets = plain.collate_targets(samples)
    rows = 2 * len(samples) if loss == "bpr" else len(samples)
    difference = (
        regularised(fused_rows(rows, 8), **targets).loss
        - plain(fused_rows(rows, 8), **targets).loss
    )
    squares = plain.user_embedding(targets["user_ids"]).pow(2).sum(-1)
    squares = squares + plain.item_embedding(targets["item_ids"]).pow(2).sum(-1)
    if loss == "bpr":
        squares = squares + plain.item_embedding(targets["neg_item_ids"]).pow(2).sum(-1)
    torch.testing.assert_close(difference, 0.5 * squares.mean())
    assert regularised.config_dict()["l2"] == 0.5
    with pytest.raises(kgmm.ConfigError, match="l2 must be >= 0"):
        RecommendationHead(8, 2, 3, l2=-1.0)


# --------------------------------------------------------------------------- the example
def load_example():
    spec = importlib.util.spec_from_file_location(
        "recommendation", REPO / "examples" / "recommendation.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_missing_data_folder_is_a_data_error(tmp_path):
    with pytest.raises(kgmm.DataError, match="Last.FM folder not found"):
        load_example().main(["--quick", "--data-dir", str(tmp_path / "nope")])


def test_quick_run_ranks_far_better_than_random(tmp_path):
    data = shared_dataset("kgrec_music_lastfm")
    summary = load_example().main(
        ["--quick", "--data-dir", str(data), "--out", str(tmp_path / "run")]
    )
    kg_run, baseline = summary["runs"]
    assert kg_run["knowledge"] == "on" and baseline["loss"] == "bpr"
    assert kg_run["test_auc"] > 0.62  # random ranking: 0.5
    assert kg_run["recall@20"] > 0.05  # random ranking: about 20 / 3846
    assert baseline["test_auc"] > 0.6
    assert json.loads((tmp_path / "run" / "results.json").read_text())["seed"] == 0
