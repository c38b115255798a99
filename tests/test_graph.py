"""KnowledgeGraph: loaders, bad input, networkx round trip, merge, traversal, stats."""

from __future__ import annotations

import json
from pathlib import Path

import networkx as nx
import numpy as np
import pytest

import kgmm
from kgmm import GraphFormatError, KnowledgeGraph, UnknownEntityError

TRIPLES = [
    ("influenza", "has_symptom", "fever"),
    ("influenza", "has_symptom", "dry cough"),
    ("oseltamivir", "treats", "influenza"),
    ("common cold", "has_symptom", "dry cough"),
    ("pneumonia", "complication_of", "influenza"),
    ("pneumonia", "affects", "lungs"),
]


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def tsv(path: Path, rows, header: bool = False) -> Path:
    lines = (["head\trelation\ttail"] if header else []) + ["\t".join(r) for r in rows]
    return write(path, "\n".join(lines) + "\n")


@pytest.fixture
def graph(tmp_path: Path) -> KnowledgeGraph:
    return KnowledgeGraph.load(tsv(tmp_path / "g.tsv", TRIPLES))


def names(kg: KnowledgeGraph, ids) -> list[str]:
    return [kg.entity(i).key for i in ids]


# ---------------------------------------------------------------- loaders
def test_tsv_with_and_without_header_give_the_same_graph(tmp_path):
    plain = KnowledgeGraph.load(tsv(tmp_path / "a.tsv", TRIPLES))
    headed = KnowledgeGraph.load(tsv(tmp_path / "b.tsv", TRIPLES, header=True))
    assert (plain.num_entities, plain.num_relations, plain.num_triples) == (7, 4, 6)
    assert np.array_equal(plain.triples, headed.triples)
    assert plain.entity_id("influenza") == headed.entity_id("influenza")


def test_csv_with_quoted_fields_and_reordered_header(tmp_path):
    path = write(
        tmp_path / "g.csv",
        'subject,object,predicate\n"ibuprofen, oral",headache,treats\naspirin,headache,treats\n',
    )
    kg = KnowledgeGraph.load(path)
    assert kg.num_triples == 2
    h, r, t = kg.triples[0]
    assert (kg.entity(h).key, kg.relation(r), kg.entity(t).key) == (
        "ibuprofen, oral",
        "treats",
        "headache",
    )


def test_jsonl_triples_and_entities(tmp_path):
    lines = [json.dumps({"head": h, "relation": r, "tail": t}) for h, r, t in TRIPLES]
    lines.append(
        json.dumps({"entity": "influenza", "aliases": ["flu", "grippe"], "type": "Disease"})
    )
    kg = KnowledgeGraph.load(write(tmp_path / "g.jsonl", "\n".join(lines)))
    flu = kg.entity(kg.entity_id("influenza"))
    assert flu.aliases == ("flu", "grippe") and flu.type == "Disease"
    assert kg.num_triples == 6


def test_entities_file_beside_triples_is_picked_up(tmp_path):
    tsv(tmp_path / "med.tsv", TRIPLES, header=True)
    write(
        tmp_path / "med.entities.tsv",
        "entity\tname\taliases\tdescription\ttype\n"
        "influenza\tInfluenza\tflu|grippe\tA viral infection of the airways.\tDisease\n"
        "Sjögren syndrome\tSjögren syndrome\tsicca syndrome\tAn autoimmune disease.\tDisease\n",
    )
    kg = KnowledgeGraph.load(tmp_path / "med.tsv")
    flu = kg.entity(kg.entity_id("influenza"))
    assert (flu.name, flu.aliases, flu.type) == ("Influenza", ("flu", "grippe"), "Disease")
    assert flu.description == "A viral infection of the airways."
    # an entity only in the entities file is kept, not dropped
    sjogren = kg.entity(kg.entity_id("Sjögren syndrome"))
    assert sjogren.aliases == ("sicca syndrome",)
    assert kg.num_entities == 8
    assert kg.entity_id("Influenza") == kg.entity_id("influenza")  # display name works too


def test_ntriples_labels_aliases_types_and_literals(tmp_path):
    ex = "http://example.org/"
    rdfs = "http://www.w3.org/2000/01/rdf-schema#"
    skos = "http://www.w3.org/2004/02/skos/core#"
    rdf_type = "http://www.w3.org/1999/02/22-rdf-syntax-ns#type"
    text = "\n".join(
        [
            f"<{ex}flu> <{ex}hasSymptom> <{ex}fever> .",
            f'<{ex}flu> <{rdfs}label> "influenza"@en .',
            f'<{ex}flu> <{skos}altLabel> "grippe" .',
            f"<{ex}flu> <{rdf_type}> <{ex}Disease> .",
            f'<{ex}flu> <{ex}icd10> "J11" .',
            f'<{ex}fever> <{rdfs}label> "fi\\u00e8vre" .',
            "# a comment",
        ]
    )
    kg = KnowledgeGraph.load(write(tmp_path / "g.nt", text))
    flu = kg.entity(kg.entity_id(f"{ex}flu"))
    assert (flu.name, flu.aliases, flu.type) == ("influenza", ("grippe",), "Disease")
    assert kg.entity(kg.entity_id(f"{ex}fever")).name == "fièvre"
    assert kg.literals == [(f"{ex}flu", f"{ex}icd10", "J11")]
    assert kg.num_triples == 2  # hasSymptom and rdf:type


def test_graphml_and_gml_load_through_networkx(tmp_path, graph):
    exported = graph.to_networkx()
    for node in exported.nodes:  # GraphML cannot store lists
        exported.nodes[node]["aliases"] = "|".join(exported.nodes[node]["aliases"])
    nx.write_graphml(exported, tmp_path / "g.graphml")
    nx.write_gml(exported, tmp_path / "g.gml")
    for name in ("g.graphml", "g.gml"):
        loaded = KnowledgeGraph.load(tmp_path / name)
        assert loaded.num_triples == graph.num_triples
        assert sorted(loaded.relations) == sorted(graph.relations)


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        ("bad.tsv", "a\tr\tb\nc\tr\n", r"bad\.tsv:2: expected 3 tab-separated columns"),
        ("bad.tsv", "a\tr\tb\na\t\tb\n", r"bad\.tsv:2: empty head, relation or tail"),
        ("bad.csv", "a,r,b\nc,r,d,e\n", r"bad\.csv:2: expected 3 comma-separated columns"),
        (
            "bad.jsonl",
            '{"head":"a","relation":"r","tail":"b"}\n{oops\n',
            r"bad\.jsonl:2: invalid JSON",
        ),
        ("bad.jsonl", '{"head":"a","tail":"b"}\n', r"bad\.jsonl:1: triple object lacks relation"),
        ("bad.nt", "<a> <r> <b> .\n<a> <r> <b>\n", r"bad\.nt:2: expected ' \.'"),
        ("bad.graphml", "<graphml><oops", r"bad\.graphml: not a valid GRAPHML file"),
        ("empty.tsv", "", r"empty\.tsv: the file holds no triples"),
        ("blank.tsv", "\n\n", r"blank\.tsv: the file holds no triples"),
        ("g.xyz", "a\tr\tb\n", r"cannot tell the graph format"),
    ],
)
def test_malformed_files_name_file_and_line(tmp_path, name, text, expected):
    with pytest.raises(GraphFormatError, match=expected):
        KnowledgeGraph.load(write(tmp_path / name, text))


def test_invalid_utf8_names_the_line(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"a\tr\tb\nc\tr\t\xff\xfe\n")
    with pytest.raises(GraphFormatError, match=r"bad\.tsv:2: not valid UTF-8"):
        KnowledgeGraph.load(path)


def test_missing_file_and_bad_entities_header(tmp_path):
    with pytest.raises(GraphFormatError, match="no such file"):
        KnowledgeGraph.load(tmp_path / "nope.tsv")
    tsv(tmp_path / "g.tsv", TRIPLES)
    write(tmp_path / "ents.tsv", "name\taliases\nflu\tgrippe\n")
    with pytest.raises(GraphFormatError, match=r"ents\.tsv:1: expected a header with an 'entity'"):
        KnowledgeGraph.load(tmp_path / "g.tsv", entities=tmp_path / "ents.tsv")


def test_errors_are_kgmm_errors():
    assert issubclass(GraphFormatError, kgmm.KGMMError)
    assert issubclass(UnknownEntityError, kgmm.KGMMError)


def test_duplicates_dropped_and_counted(tmp_path):
    kg = KnowledgeGraph.load(tsv(tmp_path / "g.tsv", TRIPLES + TRIPLES[:2] + [TRIPLES[0]]))
    assert kg.num_triples == 6
    assert kg.stats()["duplicates_dropped"] == 3
    assert names(kg, kg.triples[:, 0]) == [h for h, _, _ in TRIPLES]  # first-occurrence order


def test_unknown_entity_lists_closest_names(graph):
    with pytest.raises(
        UnknownEntityError, match=r"unknown entity 'influenze'; closest known: 'influenza'"
    ):
        graph.entity_id("influenze")
    with pytest.raises(UnknownEntityError, match="unknown relation 'treat'"):
        graph.relation_id("treat")


def test_unicode_keys_round_trip(tmp_path):
    rows = [("Sjögren syndrome", "has_symptom", "口渇"), ("fièvre", "is_a", "Symptôme")]
    kg = KnowledgeGraph.load(tsv(tmp_path / "u.tsv", rows))
    assert kg.entity(kg.entity_id("口渇")).key == "口渇"
    kg.save(tmp_path / "out" / "u.tsv")
    again = KnowledgeGraph.load(tmp_path / "out" / "u.tsv")
    assert names(again, range(again.num_entities)) == names(kg, range(kg.num_entities))


# ---------------------------------------------------------------- networkx, merge, save
def test_networkx_round_trip_keeps_attributes_and_relations():
    G = nx.MultiDiGraph()
    G.add_node(
        "influenza",
        name="Influenza",
        aliases=["flu", "grippe"],
        description="viral",
        type="Disease",
    )
    G.add_node("fever", name="fever", aliases="pyrexia|high temperature", type="Symptom")
    G.add_edge("influenza", "fever", key="has_symptom", relation="has_symptom")
    G.add_edge("influenza", "fever", key="may_cause", relation="may_cause")
    kg = KnowledgeGraph.from_networkx(G)
    assert kg.entity(kg.entity_id("fever")).aliases == ("pyrexia", "high temperature")
    back = KnowledgeGraph.from_networkx(kg.to_networkx())
    for entity in kg.entities():
        assert back.entity(back.entity_id(entity.key)) == entity
    assert sorted(back.relations) == ["has_symptom", "may_cause"]
    assert back.to_networkx().number_of_edges() == 2


def test_from_networkx_plain_digraph_uses_label_attribute():
    G = nx.DiGraph()
    G.add_edge(1, 2, label="next")
    kg = KnowledgeGraph.from_networkx(G)
    assert (kg.num_entities, kg.relations) == (2, ["next"])


def test_merge_with_and_without_namespaces(graph):
    other = KnowledgeGraph.from_triples(
        [("influenza", "is_a", "viral infection")],
        entities=[{"entity": "influenza", "aliases": "flu"}],
    )
    merged = KnowledgeGraph.merge(graph, other)
    assert merged.num_entities == graph.num_entities + 1
    assert merged.num_triples == graph.num_triples + 1
    assert merged.entity(merged.entity_id("influenza")).aliases == ("flu",)
    spaced = KnowledgeGraph.merge(graph, other, namespaces=["med", "umls"])
    assert spaced.num_entities == graph.num_entities + 2
    assert spaced.entity(spaced.entity_id("umls:influenza")).aliases == ("flu",)
    with pytest.raises(GraphFormatError, match="2 graphs but 1 namespaces"):
        KnowledgeGraph.merge(graph, other, namespaces=["x"])


def test_save_and_load_round_trip(tmp_path):
    kg = KnowledgeGraph.from_triples(
        TRIPLES, entities=[{"entity": "influenza", "name": "Influenza", "aliases": "flu|grippe"}]
    )
    kg.save(tmp_path / "g.tsv")
    again = KnowledgeGraph.load(tmp_path / "g.tsv")
    assert np.array_equal(again.triples, kg.triples)
    assert list(again.entities()) == list(kg.entities())


def test_load_splits_share_one_vocabulary(tmp_path):
    train = tsv(tmp_path / "train.txt", TRIPLES[:4])
    test = tsv(tmp_path / "test.txt", TRIPLES[4:])
    kg, (test_ids,) = KnowledgeGraph.load_splits(train, test)
    assert kg.num_triples == 4
    assert names(kg, test_ids[:, 0]) == ["pneumonia", "pneumonia"]
    assert kg.entity_id("lungs") >= 0  # test-only entity is in the vocabulary


# ---------------------------------------------------------------- traversal
def chain_graph() -> KnowledgeGraph:
    #   a -r-> b -r-> c -r-> d ;  a -s-> e ; f -r-> a
    return KnowledgeGraph.from_triples(
        [("a", "r", "b"), ("b", "r", "c"), ("c", "r", "d"), ("a", "s", "e"), ("f", "r", "a")]
    )


def test_neighbors_orders_seeds_then_hops_and_caps():
    kg = chain_graph()
    got = names(kg, kg.neighbors([kg.entity_id("a")], hops=2, max_entities=64))
    # seed, then 1-hop in edge order (forward edges b, e; inverse f), then 2-hop (c)
    assert got == ["a", "b", "e", "f", "c"]
    assert names(kg, kg.neighbors([kg.entity_id("a")], hops=1)) == ["a", "b", "e", "f"]
    assert names(kg, kg.neighbors([kg.entity_id("a")], hops=3, max_entities=3)) == ["a", "b", "e"]
    two_seeds = kg.neighbors([kg.entity_id("d"), kg.entity_id("a"), kg.entity_id("d")], hops=1)
    assert names(kg, two_seeds)[:2] == ["d", "a"]  # seeds first, deduplicated, in order
    assert kg.neighbors([kg.entity_id("a")], hops=0) == [kg.entity_id("a")]


def test_expand_reports_hop_and_relation_reached_by():
    kg = chain_graph()
    hood = kg.expand([kg.entity_id("a")], hops=2)
    r, s = kg.relation_id("r"), kg.relation_id("s")
    R = kg.num_relations
    assert hood.hops.tolist() == [0, 1, 1, 1, 2]
    # b via r forward, e via s forward, f via r inverse, c via r forward
    assert hood.relations.tolist() == [0, 1 + r, 1 + s, 1 + R + r, 1 + r]
    assert kg.num_relation_slots == 1 + 2 * R


def test_neighbors_rejects_bad_ids():
    with pytest.raises(UnknownEntityError, match="entity id 99"):
        chain_graph().neighbors([99])


def test_subgraph_returns_triples_among_the_set():
    kg = chain_graph()
    ids = [kg.entity_id(x) for x in ("a", "b", "c", "e")]
    got = {(kg.entity(h).key, kg.relation(r), kg.entity(t).key) for h, r, t in kg.subgraph(ids)}
    assert got == {("a", "r", "b"), ("b", "r", "c"), ("a", "s", "e")}


def test_stats_counts(graph):
    stats = graph.stats()
    assert stats["entities"] == 7 and stats["triples"] == 6 and stats["relations"] == 4
    assert stats["top_relations"]["has_symptom"] == 3
    assert stats["isolated_entities"] == 0


@pytest.mark.data
def test_umls_and_nations_splits_load_with_published_sizes():
    from conftest import shared_dataset

    folder = shared_dataset("kg_umls_nations")
    expected = {"umls": (135, 46, 5216, 652, 661), "nations": (14, 55, 1592, 199, 201)}
    for name, (entities, relations, train, valid, test) in expected.items():
        files = [folder / name / f"{split}.txt" for split in ("train", "valid", "test")]
        kg, (valid_ids, test_ids) = KnowledgeGraph.load_splits(*files)
        assert (kg.num_entities, kg.num_relations, kg.num_triples) == (entities, relations, train)
        assert (len(valid_ids), len(test_ids)) == (valid, test)
