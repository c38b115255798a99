"""kgmm.metrics against hand-worked examples and against sklearn / sacrebleu called directly."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import numpy as np
import pytest
import sacrebleu
from scipy.stats import binomtest
from sklearn import metrics as skm

from kgmm.errors import ConfigError, DataError
from kgmm.metrics import (
    accuracy,
    auc,
    bleu,
    chrf,
    classification_report,
    confidence_interval,
    f1_at_threshold,
    format_table,
    macro_f1,
    multilabel_f1,
    tokenized_bleu,
    topk_metrics,
)

MULTI30K = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "multi30k"


# --- classification -------------------------------------------------------------------------


def test_accuracy_hand_and_sklearn():
    y_true, y_pred = [0, 1, 2, 2], [0, 2, 2, 2]  # 3 of 4 right
    assert accuracy(y_true, y_pred) == 0.75
    assert accuracy(y_true, y_pred) == skm.accuracy_score(y_true, y_pred)


def test_macro_f1_hand_and_sklearn():
    y_true, y_pred = [0, 0, 1, 1, 2], [0, 1, 1, 1, 2]
    # class 0: P=1, R=1/2 -> F1=2/3; class 1: P=2/3, R=1 -> F1=4/5; class 2: F1=1
    expected = (2 / 3 + 4 / 5 + 1) / 3
    assert macro_f1(y_true, y_pred) == pytest.approx(expected)
    assert macro_f1(y_true, y_pred) == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_classification_report_names_classes_and_respects_labels():
    y_true = ["cat", "dog", "dog", "bird"]
    y_pred = ["cat", "dog", "cat", "bird"]
    report = classification_report(y_true, y_pred)
    for name in ("cat", "dog", "bird", "macro avg"):
        assert name in report
    only_dog = classification_report(y_true, y_pred, labels=["dog"])
    assert "dog" in only_dog and "bird" not in only_dog


def test_multilabel_f1_hand_and_sklearn():
    y_true = np.array([[1, 0, 1], [0, 1, 0]])
    y_pred = np.array([[1, 0, 0], [1, 1, 1]])
    # micro: tp=2, fp=2, fn=1 -> 2*2 / (2*2 + 2 + 1) = 4/7
    # macro: label 0 P=1/2 R=1 -> 2/3; label 1 -> 1; label 2 tp=0 -> 0; mean 5/9
    scores = multilabel_f1(y_true, y_pred)
    assert scores["micro_f1"] == pytest.approx(4 / 7)
    assert scores["macro_f1"] == pytest.approx(5 / 9)
    assert scores["micro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="micro"))
    assert scores["macro_f1"] == pytest.approx(skm.f1_score(y_true, y_pred, average="macro"))


def test_multilabel_f1_rejects_mismatched_shapes():
    with pytest.raises(DataError, match=r"\(2, 3\).*\(2, 2\)"):
        multilabel_f1(np.zeros((2, 3)), np.zeros((2, 2)))


def test_mismatched_lengths_name_both_counts():
    with pytest.raises(DataError, match="3 labels but y_pred has 2"):
        accuracy([0, 1, 1], [0, 1])


def test_wilson_interval_known_value_and_scipy():
    # p = 0.55, z = 1.95996: centre (0.55 + z^2/200) / (1 + z^2/100) = 0.54815,
    # half-width z * sqrt(0.55*0.45/100 + z^2/40000) / (1 + z^2/100) = 0.09570
    low, high = confidence_interval(55, 100)
    assert (round(low, 3), round(high, 3)) == (0.452, 0.644)
    reference = binomtest(55, 100).proportion_ci(confidence_level=0.95, method="wilson")
    assert (low, high) == pytest.approx((reference.low, reference.high), abs=1e-12)
    wide = confidence_interval(55, 100, level=0.99)
    assert wide[0] < low and wide[1] > high


def test_wilson_interval_edges_and_errors():
    assert confidence_interval(0, 10)[0] == pytest.approx(0.0, abs=1e-12)
    assert confidence_interval(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(DataError, match="correct=11, total=10"):
        confidence_interval(11, 10)
    with pytest.raises(ConfigError, match="between 0 and 1"):
        confidence_interval(5, 10, level=95)


# --- click-through ranking -------------------------------------------------------------------


def test_auc_hand_and_sklearn():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # positive/negative pairs ranked right: (0.35>0.1), (0.8>0.1), (0.8>0.4); wrong: 0.35<0.4
    assert auc(labels, scores) == 0.75
    assert auc(labels, scores) == skm.roc_auc_score(labels, scores)


def test_auc_with_one_class_says_so():
    with pytest.raises(DataError, match="only one class"):
        auc([1, 1, 1], [0.2, 0.5, 0.9])


def test_f1_at_threshold_hand_and_sklearn():
    labels, scores = [0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]
    # threshold 0.5 -> predictions [0, 0, 0, 1]: P=1, R=1/2 -> F1=2/3
    assert f1_at_threshold(labels, scores) == pytest.approx(2 / 3)
    # threshold 0.3 -> predictions [0, 1, 1, 1]: P=2/3, R=1 -> F1=4/5
    assert f1_at_threshold(labels, scores, threshold=0.3) == pytest.approx(0.8)
    assert f1_at_threshold(labels, scores, 0.3) == skm.f1_score(labels, [0, 1, 1, 1])


# --- top-K recommendation --------------------------------------------------------------------

SCORES = np.array(
    [
        [0.9, 0.8, 0.7, 0.6, 0.5],  # user 0
        [0.3, 0.2, 0.1, 0.0, 0.9],  # user 1: no test items -> not averaged
        [0.1, 0.5, 0.5, 0.2, 0.5],  # user 2: items 1, 2, 4 tie
    ]
)
TEST_ITEMS = [{0, 3}, set(), {4}]
TRAIN_ITEMS = [{1}, {0}, {2}]


def test_topk_metrics_three_user_hand_example():
    # user 0: item 1 excluded -> ranking 0, 2, 3, 4; test items 0 and 3 at ranks 1 and 3.
    #   recall@1 = 1/2, recall@3 = recall@5 = 1; ndcg@1 = 1;
    #   ndcg@3 = ndcg@5 = (1 + 1/log2 4) / (1 + 1/log2 3); mrr = 1
    # user 2: ties 1, 2, 4 break by id, item 2 excluded -> ranking 1, 4, 3, 0; item 4 at rank 2.
    #   recall@1 = 0, recall@3 = recall@5 = 1; ndcg@1 = 0; ndcg@3 = ndcg@5 = 1/log2 3; mrr = 1/2
    result = topk_metrics(SCORES, TEST_ITEMS, exclude=TRAIN_ITEMS, ks=(1, 3, 5))
    ndcg_user0 = (1 + 1 / math.log2(4)) / (1 + 1 / math.log2(3))
    ndcg_user2 = 1 / math.log2(3)
    expected = {
        "recall@1": 0.25,
        "recall@3": 1.0,
        "recall@5": 1.0,
        "ndcg@1": 0.5,
        "ndcg@3": (ndcg_user0 + ndcg_user2) / 2,
        "ndcg@5": (ndcg_user0 + ndcg_user2) / 2,
        "mrr": 0.75,
    }
    assert result == pytest.approx(expected)


def test_topk_metrics_exclusion_matters_and_dict_input_agrees():
    without = topk_metrics(SCORES, TEST_ITEMS, ks=(3,))
    # user 0 without exclusion: ranks 1 and 4 -> recall@3 = 1/2; user 2: item 4 at rank 3
    assert without["recall@3"] == 0.75
    as_dicts = topk_metrics(SCORES, {0: {0, 3}, 2: {4}}, exclude={0: {1}, 2: {2}}, ks=(1, 3, 5))
    assert as_dicts == topk_metrics(SCORES, TEST_ITEMS, exclude=TRAIN_ITEMS, ks=(1, 3, 5))


def test_topk_metrics_excluded_test_item_is_never_a_hit():
    # item 0 is both a training and a test item: it is removed, so only item 1 (rank 1) counts
    result = topk_metrics(np.array([[0.9, 0.8, 0.1]]), [{0, 1}], exclude=[{0}], ks=(2,))
    assert result["recall@2"] == 0.5
    assert result["mrr"] == 1.0


def test_topk_metrics_cutoff_beyond_item_count():
    result = topk_metrics(SCORES, TEST_ITEMS, exclude=TRAIN_ITEMS, ks=(100,))
    assert result["recall@100"] == 1.0


def test_topk_ndcg_matches_sklearn_without_ties_or_exclusions():
    rng = np.random.default_rng(0)
    scores = rng.random((20, 30))
    relevance = np.zeros((20, 30), dtype=int)
    test_items = []
    for user in range(20):
        items = rng.choice(30, size=rng.integers(1, 5), replace=False)
        relevance[user, items] = 1
        test_items.append(set(items.tolist()))
    result = topk_metrics(scores, test_items, ks=(1, 5, 10))
    for k in (1, 5, 10):
        assert result[f"ndcg@{k}"] == pytest.approx(skm.ndcg_score(relevance, scores, k=k))


def _brute_force_topk(scores, test_items, exclude, ks):
    """Sort every row by (-score, item id), drop excluded items, apply the definitions."""
    totals, users = {}, 0
    for user, tests in enumerate(test_items):
        if not tests:
            continue
        users += 1
        items = sorted(range(scores.shape[1]), key=lambda item: (-scores[user, item], item))
        ranked = [item for item in items if item not in exclude[user]]
        ranks = sorted(ranked.index(item) + 1 for item in tests if item in ranked)
        totals["mrr"] = totals.get("mrr", 0.0) + (1 / ranks[0] if ranks else 0.0)
        for k in ks:
            hits = [rank for rank in ranks if rank <= k]
            ideal = sum(1 / math.log2(rank + 1) for rank in range(1, min(k, len(tests)) + 1))
            dcg = sum(1 / math.log2(rank + 1) for rank in hits)
            totals[f"recall@{k}"] = totals.get(f"recall@{k}", 0.0) + len(hits) / len(tests)
            totals[f"ndcg@{k}"] = totals.get(f"ndcg@{k}", 0.0) + dcg / ideal
    return {name: total / users for name, total in totals.items()}


def test_topk_metrics_matches_brute_force_with_many_ties():
    rng = np.random.default_rng(1)
    scores = rng.integers(0, 4, size=(30, 12)).astype(float)
    scores[scores == 3] = -np.inf
    tests = [set(rng.choice(12, rng.integers(0, 5), replace=False).tolist()) for _ in range(30)]
    train = [set(rng.choice(12, rng.integers(0, 5), replace=False).tolist()) for _ in range(30)]
    expected = _brute_force_topk(scores, tests, train, ks=(1, 3, 20))
    assert topk_metrics(scores, tests, train, ks=(1, 3, 20)) == pytest.approx(expected)


def test_topk_metrics_errors_name_the_problem():
    with pytest.raises(DataError, match="no user has a test item"):
        topk_metrics(SCORES, [set(), set(), set()])
    with pytest.raises(DataError, match=r"test_items\[2\].*\[7\]"):
        topk_metrics(SCORES, [{0}, set(), {7}])
    with pytest.raises(DataError, match="2 entries but scores has 3 rows"):
        topk_metrics(SCORES, [{0}, {1}])


# --- link prediction -------------------------------------------------------------------------


# --- translation -----------------------------------------------------------------------------


def test_bleu_hand_value_and_sacrebleu():
    # one wrong last word: precisions 4/5, 3/4, 2/3, 1/2, BP = 1 -> 100 * (1/5) ** (1/4)
    result = bleu(["a b c d e"], ["a b c d f"])
    assert result.score == pytest.approx(100 * 0.2**0.25)
    hyps = ["The cat sat on the mat.", "A dog runs in the park!"]
    refs = ["The cat is sitting on the mat.", "A dog is running in a park."]
    assert bleu(hyps, refs).score == pytest.approx(sacrebleu.corpus_bleu(hyps, [refs]).score)


def test_bleu_signature_is_sacrebleus():
    result = bleu(["a b c d e"], ["a b c d f"])
    assert "nrefs:1" in result.signature and "tok:13a" in result.signature
    assert "case:mixed" in result.signature
    assert "ref_len = 5" in result.details


def test_bleu_multiple_references():
    # every n-gram of the hypothesis occurs in one of the two references -> 100
    result = bleu(["a b c d e"], [["a b c d f", "x b c d e"]])
    assert result.score == pytest.approx(100)
    assert "nrefs:2" in result.signature
    uneven = bleu(["a b c d e", "f g h i"], [["a b c d f", "x b c d e"], "f g h i"])
    assert "nrefs:var" in uneven.signature


def test_bleu_rejects_count_mismatch():
    with pytest.raises(DataError, match="2 hypotheses but 1 references"):
        bleu(["a", "b"], ["a"])


def test_chrf_matches_sacrebleu():
    hyps = ["The cat sat on the mat.", "A dog runs in the park!"]
    refs = ["The cat is sitting on the mat.", "A dog is running in a park."]
    result = chrf(hyps, refs)
    assert result.score == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs]).score)
    assert result.signature.startswith("nrefs:1|case:mixed")
    plus = chrf(hyps, refs, word_order=2)
    assert plus.score == pytest.approx(sacrebleu.corpus_chrf(hyps, [refs], word_order=2).score)


def test_tokenized_bleu_lowercases_and_tokenises():
    assert tokenized_bleu(["A Dog Runs In The Park."], ["a dog runs in the park ."]).score == (
        pytest.approx(100)
    )
    assert bleu(["A Dog Runs In The Park."], ["a dog runs in the park."]).score < 100
    result = tokenized_bleu(["a b c d e"], ["a b c d f"])
    assert result.score == pytest.approx(100 * 0.2**0.25)
    assert "case:lc" in result.signature and "smooth:none" in result.signature


def test_tokenized_bleu_pretokenized_splits_on_spaces_only():
    # "park." is one token when the text counts as already tokenised
    split_on_spaces = tokenized_bleu(["a dog in the park."], ["a dog in the park ."], True)
    assert split_on_spaces.score < 100
    result = tokenized_bleu(["a dog &apos;s park ."], ["a dog &apos;s park ."], pretokenized=True)
    assert result.score == pytest.approx(100)
    assert "tok:none" in result.signature


@pytest.mark.data
def test_tokenized_bleu_reference_length_on_multi30k_test2016():
    path = MULTI30K / "raw" / "test_2016_flickr.de.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        references = [line.rstrip("\n") for line in handle]
    result = tokenized_bleu(references, references)
    # Moses-tokenised references have 12,103 tokens (the published reflen); 13a gives 12,106
    assert result.score == pytest.approx(100)
    assert "ref_len = 12106" in result.details


# --- report ----------------------------------------------------------------------------------


def test_format_table_aligns_numbers_right_and_text_left():
    rows = [{"model": "text-only", "bleu": 41.02, "n": 1000}, {"model": "gated", "bleu": 41.963}]
    table = format_table(rows, ["model", "bleu", "n"])
    assert table.splitlines() == [
        "model         bleu     n",
        "---------  -------  ----",
        "text-only  41.0200  1000",
        "gated      41.9630     -",
    ]
