"""Checks on the bundled knowledge graphs in graphs/ (standard library only)."""

from __future__ import annotations

import csv
from collections import defaultdict
from pathlib import Path

import pytest

GRAPHS = Path(__file__).resolve().parent.parent / "graphs"
TRIPLE_HEADER = ["head", "relation", "tail"]
ENTITY_HEADER = ["entity", "name", "aliases", "description", "type"]
TYPES = {"Disease", "Symptom", "Drug", "DrugClass", "BodyPart", "Pathogen", "Test", "RiskFactor"}

# relation -> (allowed head types, allowed tail types); graphs/README.md documents the same set.
RELATIONS = {
    "has_symptom": ({"Disease"}, {"Symptom"}),
    "treats": ({"Drug"}, {"Disease"}),
    "prevents": ({"Drug"}, {"Disease"}),
    "relieves": ({"Drug"}, {"Symptom"}),
    "is_a": ({"Drug", "DrugClass", "Disease"}, {"DrugClass", "Disease"}),
    "affects": ({"Disease"}, {"BodyPart"}),
    "caused_by": ({"Disease"}, {"Pathogen"}),
    "risk_factor_for": ({"RiskFactor", "Disease", "Pathogen"}, {"Disease"}),
    "diagnosed_by": ({"Disease"}, {"Test"}),
    "side_effect": ({"Drug"}, {"Symptom", "Disease"}),
    "contraindicated_in": ({"Drug"}, {"Disease", "RiskFactor"}),
    "interacts_with": ({"Drug"}, {"Drug"}),
    "complication_of": ({"Disease"}, {"Disease"}),
    "located_in": ({"BodyPart"}, {"BodyPart"}),
}
IS_A_PAIRS = {("Drug", "DrugClass"), ("DrugClass", "DrugClass"), ("Disease", "Disease")}


def read_rows(path: Path, width: int) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a plain TSV file, failing with file and line on a bad row."""
    with open(path, encoding="utf-8", newline="") as handle:
        rows = list(csv.reader(handle, delimiter="\t", quoting=csv.QUOTE_NONE))
    for number, row in enumerate(rows, start=1):
        assert len(row) == width, f"{path.name}:{number}: expected {width} fields, got {row}"
        for field in row:
            assert field == field.strip(), f"{path.name}:{number}: stray whitespace in {field!r}"
    return rows[0], rows[1:]


def load(name: str) -> tuple[list[tuple[str, str, str]], dict[str, dict[str, str]]]:
    header, rows = read_rows(GRAPHS / f"{name}.tsv", 3)
    assert header == TRIPLE_HEADER
    triples = [tuple(row) for row in rows]
    header, rows = read_rows(GRAPHS / f"{name}.entities.tsv", 5)
    assert header == ENTITY_HEADER
    entities: dict[str, dict[str, str]] = {}
    for row in rows:
        assert row[0] not in entities, f"{name}.entities.tsv: duplicate entity key {row[0]!r}"
        entities[row[0]] = dict(zip(ENTITY_HEADER, row))
    return triples, entities


def aliases(entity: dict[str, str]) -> list[str]:
    return entity["aliases"].split("|") if entity["aliases"] else []


@pytest.fixture(scope="module", params=["medical", "tiny"])
def graph(request: pytest.FixtureRequest):
    return request.param, *load(request.param)


def test_files_are_utf8_without_bom() -> None:
    for path in sorted(GRAPHS.glob("*.tsv")):
        raw = path.read_bytes()
        raw.decode("utf-8")
        assert not raw.startswith(b"\xef\xbb\xbf"), path.name
        assert b"\r" not in raw, f"{path.name}: use LF line endings"


def test_triples_are_unique_and_well_formed(graph) -> None:
    name, triples, _ = graph
    assert len(set(triples)) == len(triples), "duplicate triples"
    pairs = [frozenset((h, t)) for h, r, t in triples if r == "interacts_with"]
    assert len(set(pairs)) == len(pairs), "interacts_with is symmetric: list each pair once"
    for head, relation, tail in triples:
        assert head and relation and tail and head != tail, (head, relation, tail)


def test_every_endpoint_has_an_entity_row_and_every_row_is_used(graph) -> None:
    name, triples, entities = graph
    used = {e for h, _, t in triples for e in (h, t)}
    assert sorted(used - entities.keys()) == [], f"{name}: triple endpoints without entity rows"
    assert sorted(entities.keys() - used) == [], f"{name}: entity rows not used by any triple"


def test_entity_rows_are_complete(graph) -> None:
    _, _, entities = graph
    for key, entity in entities.items():
        assert key == key.lower() and not key.startswith("#"), key
        assert entity["name"] and entity["description"], key
        assert entity["type"] in TYPES, (key, entity["type"])
        assert all(aliases(entity)), f"{key}: empty alias in {entity['aliases']!r}"


def test_relations_are_documented_and_typed(graph) -> None:
    _, triples, entities = graph
    readme = (GRAPHS / "README.md").read_text(encoding="utf-8")
    for relation in RELATIONS:
        assert f"`{relation}`" in readme, f"{relation} is not documented in graphs/README.md"
    for head, relation, tail in triples:
        assert relation in RELATIONS, relation
        heads, tails = RELATIONS[relation]
        head_type, tail_type = entities[head]["type"], entities[tail]["type"]
        assert head_type in heads and tail_type in tails, (head, relation, tail)
        if relation == "is_a":
            assert (head_type, tail_type) in IS_A_PAIRS, (head, tail)


def test_is_a_has_no_cycles(graph) -> None:
    _, triples, _ = graph
    parents = defaultdict(list)
    for head, relation, tail in triples:
        if relation == "is_a":
            parents[head].append(tail)
    done: set[str] = set()

    def visit(node: str, path: tuple[str, ...]) -> None:
        assert node not in path, "is_a cycle: " + " -> ".join(path + (node,))
        if node not in done:
            for parent in parents[node]:
                visit(parent, path + (node,))
            done.add(node)

    for node in list(parents):
        visit(node, ())


def test_surface_forms_name_one_entity(graph) -> None:
    """A key, name or alias (case-insensitive) never points at two different entities."""
    _, _, entities = graph
    owners = defaultdict(set)
    for key, entity in entities.items():
        for form in [key, entity["name"], *aliases(entity)]:
            owners[form.casefold()].add(key)
    shared = {form: sorted(keys) for form, keys in owners.items() if len(keys) > 1}
    assert shared == {}


def test_drug_facts_do_not_contradict_each_other(graph) -> None:
    _, triples, _ = graph
    facts = defaultdict(set)
    for head, relation, tail in triples:
        facts[head, relation].add(tail)
    for (drug, relation), targets in list(facts.items()):
        if relation == "treats":
            assert not targets & facts[drug, "side_effect"], drug
            assert not targets & facts[drug, "contraindicated_in"], drug
        if relation == "relieves":
            assert not targets & facts[drug, "side_effect"], drug


def test_medical_graph_meets_its_size() -> None:
    triples, entities = load("medical")
    assert len(entities) >= 300 and len(triples) >= 1500
    assert {e["type"] for e in entities.values()} == TYPES
    assert {r for _, r, _ in triples} == set(RELATIONS)
    assert entities["sjogren syndrome"]["name"] == "Sjögren syndrome"


def test_tiny_graph_is_a_consistent_subset_of_medical() -> None:
    triples, entities = load("tiny")
    medical_triples, medical_entities = load("medical")
    assert 12 <= len(entities) <= 20 and 20 <= len(triples) <= 40
    assert set(triples) <= set(medical_triples)
    for key, entity in entities.items():
        assert entity == medical_entities[key], key
    required = {
        "influenza",
        "fever",
        "dry cough",
        "oseltamivir",
        "common cold",
        "ibuprofen",
        "headache",
        "lungs",
        "pneumonia",
    }
    assert required <= entities.keys()
    assert "flu" in aliases(entities["influenza"])
    assert "fièvre" in aliases(entities["fever"])
    all_aliases = [a for e in entities.values() for a in aliases(e)]
    assert any(" " in alias for alias in all_aliases)
