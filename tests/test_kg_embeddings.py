"""KG embeddings: the four models learn, ranks match hand-computed ones, files round-trip."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from kgmm.errors import CheckpointError, ConfigError, UnknownEntityError
from kgmm.graph.embeddings import EntityEmbeddings
from kgmm.graph.kge import build_model, rank_metrics, rank_triples, train_kg_embeddings
from kgmm.graph.knowledge_graph import KnowledgeGraph

MODELS = ["transe", "distmult", "complex", "rotate"]


@pytest.fixture(scope="module")
def toy_graph() -> KnowledgeGraph:
    """Four groups of five items, each group in one of two categories."""
    triples = []
    for group in range(4):
        for i in range(5):
            item = f"item{5 * group + i}"
            triples += [(item, "member_of", f"group{group}"), (f"group{group}", "has_member", item)]
        triples.append((f"group{group}", "category", f"category{group % 2}"))
    return KnowledgeGraph.from_triples(triples)


@pytest.mark.parametrize("model", MODELS)
def test_each_model_learns_the_toy_graph(toy_graph, model):
    emb = train_kg_embeddings(toy_graph, model, dim=32, epochs=60, batch_size=32, progress=False)
    metrics = emb.evaluate(toy_graph.triples)
    assert metrics["mrr"] > 0.95, metrics
    assert metrics["hits@3"] == 1.0
    assert emb.vectors.shape == (toy_graph.num_entities, 32)
    assert len(emb) == toy_graph.num_entities and emb.dim == 32


@pytest.mark.parametrize("model", MODELS)
@pytest.mark.parametrize("reciprocal", [False, True])
def test_one_to_n_scores_match_single_triple_scores(model, reciprocal):
    scorer = build_model(
        model, 7, 3, 8, reciprocal=reciprocal, gamma=2.0, generator=torch.Generator().manual_seed(1)
    )
    h, r, t = torch.tensor([0, 3, 6]), torch.tensor([0, 2, 1]), torch.tensor([5, 3, 1])
    all_tails = scorer.score_all_tails(h, r)
    all_heads = scorer.score_all_heads(r, t)
    rows = torch.arange(3)
    torch.testing.assert_close(all_tails[rows, t], scorer.score(h, r, t))
    torch.testing.assert_close(all_heads[rows, h], scorer.score_heads(h, r, t))


class StubScorer(torch.nn.Module):
    """Fixed scores over 4 entities: tails for (0, r, ?), heads for (?, r, 1)."""

    num_entities, num_relations = 4, 1
    tails = torch.tensor([0.1, 0.5, 0.5, 0.9])
    heads = torch.tensor([0.2, 0.8, 0.3, 0.2])

    def score_all_tails(self, h, r):
        return self.tails.repeat(len(h), 1)

    def score_all_heads(self, r, t):
        return self.heads.repeat(len(t), 1)


def test_ranks_by_hand_filtered_raw_and_ties():
    test = np.array([[0, 0, 1]])
    train = np.array([[0, 0, 3], [2, 0, 1]])
    known = np.concatenate([train, test])
    # tail (0, 0, ?): true 1 scores 0.5; 3 scores higher (known, filtered), 2 ties
    # head (?, 0, 1): true 0 scores 0.2; 1 and 2 higher (2 is known), 3 ties
    raw = rank_triples(StubScorer(), test, filtered=False)
    filtered = rank_triples(StubScorer(), test, known)
    assert raw.tolist() == [[3.5], [2.5]]
    assert filtered.tolist() == [[2.5], [1.5]]
    metrics = rank_metrics(filtered)
    assert metrics["mrr"] == pytest.approx((1 / 2.5 + 1 / 1.5) / 2)
    assert metrics["hits@1"] == 0.0 and metrics["hits@3"] == 1.0
    assert rank_metrics(raw)["hits@3"] == 0.5


def test_all_equal_scores_give_the_middle_rank():
    class Flat(StubScorer):
        tails = heads = torch.zeros(4)

    ranks = rank_triples(Flat(), np.array([[0, 0, 1]]), filtered=False)
    assert ranks.tolist() == [[2.5], [2.5]]


def distmult_line() -> EntityEmbeddings:
    """One-dimensional DistMult: score(h, r, t) = v[h] * v[t], v = [1, 2, 2, 3]."""
    return EntityEmbeddings(
        torch.tensor([[1.0], [2.0], [2.0], [3.0]]),
        ["a", "b", "c", "d"],
        "distmult",
        relation_vectors=torch.tensor([[1.0]]),
        relation_names=["r"],
        known_triples=np.array([[0, 0, 3]]),
    )


def test_evaluate_filters_training_triples_also_known_and_the_test_triples():
    emb = distmult_line()
    # tail (a, r, ?): scores [1, 2, 2, 3], d is a training triple -> rank 1.5
    # head (?, r, b): scores [2, 4, 4, 6], nothing known but a -> rank 4
    assert emb.evaluate([("a", "r", "b")])["mrr"] == pytest.approx((1 / 1.5 + 1 / 4) / 2)
    with_valid = emb.evaluate([("a", "r", "b")], also_known=[("d", "r", "b")])
    assert with_valid["mrr"] == pytest.approx((1 / 1.5 + 1 / 3) / 2)
    raw = emb.evaluate(np.array([[0, 0, 1]]), filtered=False)
    assert raw["mrr"] == pytest.approx((1 / 2.5 + 1 / 4) / 2)


def test_evaluate_names_the_unknown_entity():
    with pytest.raises(UnknownEntityError, match="'zebra'"):
        distmult_line().evaluate([("a", "r", "zebra")])


def test_save_load_round_trip(tmp_path, toy_graph):
    emb = train_kg_embeddings(toy_graph, "complex", dim=16, epochs=5, progress=False)
    emb.save(tmp_path / "emb.safetensors")
    loaded = EntityEmbeddings.load(tmp_path / "emb.safetensors")
    assert torch.equal(loaded.vectors, emb.vectors)
    assert torch.equal(loaded.relation_vectors, emb.relation_vectors)
    assert loaded.entity_keys == emb.entity_keys and loaded.model_name == "complex"
    assert loaded.config == emb.config and loaded.history == emb.history
    assert loaded.evaluate(toy_graph.triples) == emb.evaluate(toy_graph.triples)
    loaded.check_graph(toy_graph)


def test_load_rejects_missing_and_foreign_files(tmp_path):
    from safetensors.torch import save_file

    with pytest.raises(CheckpointError, match="no such embeddings file"):
        EntityEmbeddings.load(tmp_path / "absent.safetensors")
    save_file({"weight": torch.zeros(2)}, str(tmp_path / "other.safetensors"))
    with pytest.raises(CheckpointError, match="not a kgmm entity-embeddings file"):
        EntityEmbeddings.load(tmp_path / "other.safetensors")
    (tmp_path / "junk.safetensors").write_bytes(b"not a tensor file")
    with pytest.raises(CheckpointError, match="not a safetensors file"):
        EntityEmbeddings.load(tmp_path / "junk.safetensors")


def test_same_seed_gives_identical_embeddings(toy_graph):
    def run(seed: int) -> torch.Tensor:
        return train_kg_embeddings(
            toy_graph, "rotate", dim=16, epochs=3, seed=seed, progress=False
        ).vectors

    assert torch.equal(run(0), run(0))
    assert not torch.equal(run(0), run(1))


def test_valid_split_selects_the_best_epoch_and_logs(tmp_path, toy_graph):
    log = tmp_path / "log.jsonl"
    emb = train_kg_embeddings(
        toy_graph,
        "distmult",
        dim=16,
        epochs=4,
        eval_every=2,
        valid=toy_graph.triples[:5],
        log_file=log,
        progress=False,
    )
    assert [r["epoch"] for r in emb.history] == [1, 2, 3, 4]
    assert "valid_mrr" in emb.history[1] and "valid_mrr" not in emb.history[0]
    assert len(log.read_text().splitlines()) == 4


def test_configuration_errors_say_what_is_allowed(toy_graph):
    with pytest.raises(ConfigError, match="choose one of"):
        train_kg_embeddings(toy_graph, "conve", progress=False)
    with pytest.raises(ConfigError, match="unknown training option"):
        train_kg_embeddings(toy_graph, "transe", epochs=1, learning_rate=0.1, progress=False)
    with pytest.raises(ConfigError, match="even"):
        train_kg_embeddings(toy_graph, "complex", dim=15, epochs=1, progress=False)


def test_from_text_puts_synonyms_close_together():
    kg = KnowledgeGraph.from_triples(
        [
            ("influenza", "related_to", "flu virus infection"),
            ("broken leg", "related_to", "influenza"),
        ]
    )
    emb = EntityEmbeddings.from_text(kg)
    assert emb.vectors.shape == (3, 384) and emb.model_name == "text"
    torch.testing.assert_close(emb.vectors.norm(dim=1), torch.ones(3))
    flu, infection, leg = (
        emb.vectors[kg.entity_id(n)] for n in ("influenza", "flu virus infection", "broken leg")
    )
    assert flu @ infection > flu @ leg
    with pytest.raises(ConfigError, match="cannot score triples"):
        emb.evaluate([("influenza", "related_to", "flu virus infection")])


@pytest.mark.data
@pytest.mark.parametrize(
    ("dataset", "model", "published_mrr", "published_hits10"),
    [("umls", "complex", 0.940, 0.992), ("nations", "distmult", 0.7155, 1.0)],
)
def test_best_model_reaches_published_numbers(dataset, model, published_mrr, published_hits10):
    """Within 0.03 of the best published MRR and Hits@10 (PROVENANCE.md), default settings."""
    from conftest import shared_dataset

    folder = shared_dataset("kg_umls_nations") / dataset
    kg, (valid, test) = KnowledgeGraph.load_splits(
        folder / "train.txt", folder / "valid.txt", folder / "test.txt"
    )
    embeddings = train_kg_embeddings(kg, model=model, valid=valid, seed=0, progress=False)
    metrics = embeddings.evaluate(test, filtered=True, also_known=valid)
    assert metrics["mrr"] >= published_mrr - 0.03
    assert metrics["hits@10"] >= published_hits10 - 0.03
