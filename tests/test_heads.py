"""Task heads: each learns a tiny task, decodes, round-trips its config, and rejects bad data."""

from __future__ import annotations

import json
import random

import pytest
import sacrebleu
import torch
from torch import nn

from kgmm.errors import ConfigError, DataError
from kgmm.fusion import FusionOutput
from kgmm.heads import (
    ClassificationHead,
    HeadOutput,
    MultipleChoiceHead,
    QuestionAnsweringHead,
    RecommendationHead,
    TranslationHead,
    build_head,
    head_config,
    train_target_tokenizer,
)
from kgmm.heads.beam_search import beam_search
from kgmm.heads.translation import sinusoidal_positions

D = 16


def make_fused(
    tokens: torch.Tensor,
    mask: torch.Tensor | None = None,
    entity_states: torch.Tensor | None = None,
    entity_mask: torch.Tensor | None = None,
    pooled: torch.Tensor | None = None,
) -> FusionOutput:
    """A FusionOutput built from given tensors (no fusion module involved)."""
    batch, length, dim = tokens.shape
    if mask is None:
        mask = torch.ones(batch, length, dtype=torch.bool)
    if entity_states is None:
        entity_states = torch.zeros(batch, 0, dim)
    if entity_mask is None:
        entity_mask = torch.ones(entity_states.shape[:2], dtype=torch.bool)
    if pooled is None:
        weights = mask.float()[..., None]
        pooled = (tokens * weights).sum(1) / weights.sum(1).clamp(min=1.0)
    num_entities = entity_states.shape[1]
    return FusionOutput(
        tokens=tokens,
        mask=mask,
        pooled=pooled,
        modality_slices={"text": slice(0, length)},
        entity_ids=torch.zeros(batch, num_entities, dtype=torch.long),
        entity_mask=entity_mask,
        entity_states=entity_states,
        entity_attention=torch.zeros(batch, num_entities),
        entity_source=torch.zeros(batch, num_entities, dtype=torch.long),
    )


def pooled_only(features: torch.Tensor) -> FusionOutput:
    return make_fused(torch.zeros(features.shape[0], 1, features.shape[1]), pooled=features)


def fit(head: nn.Module, loss_fn, steps: int, lr: float = 1e-2, extra=()) -> float:
    optimiser = torch.optim.Adam([*head.parameters(), *extra], lr=lr)
    head.train()
    for _ in range(steps):
        loss = loss_fn()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    head.eval()
    return loss.item()


def assert_round_trip(head, fused: FusionOutput, **inputs) -> None:
    """JSON config -> fresh head + state dict gives the same logits."""
    config = json.loads(json.dumps(head_config(head)))
    rebuilt = build_head(config)
    rebuilt.load_state_dict(head.state_dict())
    rebuilt.eval()
    head.eval()
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(fused, **inputs).logits, head(fused, **inputs).logits)


# --------------------------------------------------------------------------- classification


def test_classification_overfits_sixteen_examples_and_round_trips():
    torch.manual_seed(0)
    labels = ["billing", "shipping", "refund", "other"]
    features = torch.randn(16, D)
    samples = [{"label": labels[i % 4]} for i in range(16)]
    head = ClassificationHead(D, labels, dropout=0.0, hidden=32, label_smoothing=0.1)
    targets = head.collate_targets(samples)
    assert targets["labels"].tolist() == [i % 4 for i in range(16)]
    fit(head, lambda: head(pooled_only(features), **targets).loss, steps=150)
    assert head.decode(head(pooled_only(features))) == [s["label"] for s in samples]
    assert_round_trip(head, pooled_only(features))


def test_multi_label_classification_overfits_and_thresholds():
    torch.manual_seed(1)
    labels = ["fever", "cough", "rash"]
    features = torch.randn(16, D)
    truth = [[name for j, name in enumerate(labels) if (i >> j) & 1] for i in range(16)]
    samples = [{"label": t[0] if len(t) == 1 else t} for t in truth]
    head = ClassificationHead(D, labels, multi_label=True, dropout=0.0)
    targets = head.collate_targets(samples)
    assert targets["labels"].shape == (16, 3)
    fit(head, lambda: head(pooled_only(features), **targets).loss, steps=200)
    assert head.decode(head(pooled_only(features))) == truth
    assert head.decode(head(pooled_only(features)), threshold=1.0) == [[]] * 16


def test_classification_unknown_label_names_sample_and_closest_label():
    head = ClassificationHead(D, ["positive", "negative"])
    with pytest.raises(
        DataError, match=r"sample 1: field 'label' .*'postive'.*closest: 'positive'"
    ):
        head.collate_targets([{"label": "negative"}, {"label": "postive"}])
    with pytest.raises(DataError, match=r"sample 0: .*field 'label', which is missing"):
        head.collate_targets([{"text": "no label"}])
    with pytest.raises(ConfigError):
        ClassificationHead(D, ["a", "a"])


# --------------------------------------------------------------------------- question answering


def test_yes_no_maybe_head_learns_a_fixed_mapping():
    torch.manual_seed(2)
    prototypes = torch.randn(3, D)
    kinds = torch.randint(0, 3, (96,))
    features = prototypes[kinds] + 0.3 * torch.randn(96, D)
    answers = ["yes", "no", "maybe"]
    samples = [{"answer": answers[k]} for k in kinds.tolist()]
    head = QuestionAnsweringHead(D, dropout=0.0)
    train, test = slice(0, 64), slice(64, 96)
    targets = head.collate_targets(samples[train])
    fit(head, lambda: head(pooled_only(features[train]), **targets).loss, steps=100)
    predicted = head.decode(head(pooled_only(features[test])))
    assert predicted == [s["answer"] for s in samples[test]]
    assert_round_trip(head, pooled_only(features[test]))
    with pytest.raises(DataError, match=r"sample 0: field 'answer' .*'Yes'.*closest: 'yes'"):
        head.collate_targets([{"answer": "Yes"}])


def test_answer_weights_scale_each_answers_loss_and_survive_a_round_trip():
    torch.manual_seed(3)
    features = torch.randn(6, D)
    samples = [{"answer": a} for a in ["yes", "yes", "yes", "yes", "no", "maybe"]]
    head = QuestionAnsweringHead(D, dropout=0.0, class_weights=[0.5, 1.0, 3.0])
    targets = head.collate_targets(samples)
    output = head(pooled_only(features), **targets)
    expected = nn.functional.cross_entropy(
        output.logits, targets["answer_index"], weight=torch.tensor([0.5, 1.0, 3.0])
    )
    assert torch.allclose(output.loss, expected)
    assert head.config_dict()["class_weights"] == [0.5, 1.0, 3.0]
    assert_round_trip(head, pooled_only(features))
    with pytest.raises(ConfigError, match=r"one positive weight per answer \['yes', 'no'"):
        QuestionAnsweringHead(D, class_weights=[1.0, 2.0])


PLANTED = torch.randn(D, generator=torch.Generator().manual_seed(4))


def multiple_choice_batch(num_questions: int, generator: torch.Generator):
    """Questions with 3 or 4 options; the answer's row carries the planted direction."""
    samples, features = [], []
    for q in range(num_questions):
        count = 3 + q % 2
        answer = int(torch.randint(0, count, (1,), generator=generator))
        options = [f"option {q}.{j}" for j in range(count)]
        samples.append({"text": f"question {q}", "options": options, "answer": options[answer]})
        rows = torch.randn(4, D, generator=generator)
        rows[answer] += 2.0 * PLANTED
        features.append(rows)
    return samples, torch.cat(features)


def test_multiple_choice_head_picks_the_planted_option():
    generator = torch.Generator().manual_seed(3)
    torch.manual_seed(3)
    head = MultipleChoiceHead(D, dropout=0.0)
    train_samples, train_features = multiple_choice_batch(32, generator)
    test_samples, test_features = multiple_choice_batch(16, generator)
    targets = head.collate_targets(train_samples)
    assert targets["choice_mask"].shape == (32, 4)
    assert targets["choice_mask"].sum(1).tolist() == [3, 4] * 16
    fit(head, lambda: head(pooled_only(train_features), **targets).loss, steps=100)

    inputs = head.collate_inputs(test_samples)
    output = head(pooled_only(test_features), **inputs)
    assert torch.isinf(output.logits[~inputs["choice_mask"]]).all()
    options = [s["options"] for s in test_samples]
    assert head.decode(output, options=options) == [s["answer"] for s in test_samples]
    assert_round_trip(head, pooled_only(test_features), **inputs)


def test_multiple_choice_expands_pairs_and_reads_answers_every_way():
    samples = [
        {"text": "q0", "options": ["a", "b", "c"], "answer": "b", "image": "x.png"},
        {"text": "q1", "options": {"A": "yes", "B": "no"}, "answer": "B"},
        {"text": "q2", "options": ["p", "q"], "answer": 0},
    ]
    rows = MultipleChoiceHead.expand_samples(samples)
    assert [row["text"] for row in rows[:3]] == [("q0", "a"), ("q0", "b"), ("q0", "c")]
    assert [row["text"] for row in rows[3:6]] == [("q1", "yes"), ("q1", "no"), ("q1", "")]
    assert len(rows) == 9 and rows[0]["image"] == "x.png"
    targets = MultipleChoiceHead(D).collate_targets(samples)
    assert targets["answer_index"].tolist() == [1, 1, 0]
    with pytest.raises(DataError, match=r"sample 1: field 'answer' .*'maybe'"):
        MultipleChoiceHead(D).collate_targets([samples[0], {**samples[2], "answer": "maybe"}])
    with pytest.raises(DataError, match=r"sample 0: field 'answer' index 5"):
        MultipleChoiceHead(D).collate_targets([{**samples[2], "answer": 5}])
    with pytest.raises(DataError, match=r"sample 0: field 'options' must be a non-empty list"):
        MultipleChoiceHead.expand_samples([{"text": "q", "options": []}])
    head = MultipleChoiceHead(D)
    with pytest.raises(DataError, match="expand_samples"):
        head(pooled_only(torch.randn(3, D)), choice_mask=torch.ones(1, 2, dtype=torch.bool))


# --------------------------------------------------------------------------- translation

SYMBOLS = list("abcdefghij")


def symbol_tokenizer():
    return train_target_tokenizer([" ".join(SYMBOLS)] * 4, vocab_size=30)


class SourceEmbedding(nn.Module):
    """The 'fused' memory of the toy tasks: token + forward sinusoid + learned backward position."""

    def __init__(self, dim: int) -> None:
        super().__init__()
        self.tokens = nn.Embedding(len(SYMBOLS), dim)
        self.backward = nn.Embedding(16, dim)
        self.register_buffer("forward_positions", sinusoidal_positions(16, dim))

    def forward(self, sources: list[list[str]]) -> FusionOutput:
        length = max(len(s) for s in sources)
        ids = torch.zeros(len(sources), length, dtype=torch.long)
        mask = torch.zeros(len(sources), length, dtype=torch.bool)
        for i, source in enumerate(sources):
            ids[i, : len(source)] = torch.tensor([SYMBOLS.index(c) for c in source])
            mask[i, : len(source)] = True
        back = (mask.sum(1, keepdim=True) - 1 - torch.arange(length)).clamp(min=0)
        tokens = self.tokens(ids) + self.forward_positions[:length] + self.backward(back)
        return make_fused(tokens * mask[..., None], mask)


def toy_pairs(task: str, count: int, seed: int) -> list[tuple[list[str], str]]:
    rng = random.Random(seed)
    pairs = []
    for _ in range(count):
        source = [rng.choice(SYMBOLS) for _ in range(rng.randint(3, 8))]
        target = source if task == "copy" else source[::-1]
        pairs.append((source, " ".join(target)))
    return pairs


@pytest.fixture(scope="module", params=["copy", "reverse"])
def trained_toy_translator(request):
    task = request.param
    torch.manual_seed(0)
    head = TranslationHead(
        32,
        tokenizer=symbol_tokenizer(),
        num_layers=2,
        num_heads=4,
        ffn_dim=64,
        dropout=0.0,
        max_length=12,
    )
    source = SourceEmbedding(32)
    optimiser = torch.optim.Adam([*head.parameters(), *source.parameters()], lr=1e-2)
    steps = 300
    schedule = torch.optim.lr_scheduler.OneCycleLR(optimiser, 1e-2, total_steps=steps)
    rng_seed = iter(range(steps))
    for _ in range(steps):
        batch = toy_pairs(task, 32, seed=next(rng_seed))
        targets = head.collate_targets([{"target": target} for _, target in batch])
        loss = head(source([s for s, _ in batch]), **targets).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        schedule.step()
    head.eval()
    return task, head, source


def test_translation_head_learns_copy_and_reverse_to_high_bleu(trained_toy_translator):
    task, head, source = trained_toy_translator
    test = toy_pairs(task, 100, seed=10_000)
    with torch.no_grad():
        hypotheses = head.decode(head.generate(source([s for s, _ in test]), beam_size=4))
    bleu = sacrebleu.corpus_bleu(hypotheses, [[target for _, target in test]]).score
    assert bleu > 90, (task, bleu, hypotheses[:5])


def greedy_by_recomputation(head: TranslationHead, fused: FusionOutput) -> list[list[int]]:
    """Greedy decoding that reruns the whole teacher-forced decoder at every step (no cache)."""
    results = []
    for row in range(fused.tokens.shape[0]):
        one = make_fused(fused.tokens[row : row + 1], fused.mask[row : row + 1])
        prefix = [head.bos_id]
        while len(prefix) < head.max_length:
            ids = torch.tensor([prefix + [head.pad_id]])
            next_id = int(head(one, target_ids=ids).logits[0, -1].argmax())
            prefix.append(next_id)
            if next_id == head.eos_id:
                break
        results.append(prefix[1:])
    return results


def strip(ids: torch.Tensor, pad_id: int) -> list[list[int]]:
    return [[t for t in row if t != pad_id] for row in ids.tolist()]


def test_beam_one_equals_greedy_recomputed_without_cache(trained_toy_translator):
    _, head, source = trained_toy_translator
    sources = [s for s, _ in toy_pairs("copy", 6, seed=7)]
    with torch.no_grad():
        fused = source(sources)
        beam_one = head.generate(fused, beam_size=1).predictions
        assert strip(beam_one, head.pad_id) == greedy_by_recomputation(head, fused)


def test_beam_search_finds_the_sequence_greedy_misses():
    """After <s>: A 0.6, B 0.4; after A: EOS 0.3 (else A/B); after B: EOS 0.9.

    Greedy takes A (best path A EOS: 0.18); a beam of 2 keeps B and finds B EOS (0.36).
    """
    pad, bos, eos, a, b = range(5)
    table = torch.full((5, 5), 1e-9)
    table[bos, [a, b]] = torch.tensor([0.6, 0.4])
    table[a, [eos, a, b]] = torch.tensor([0.3, 0.36, 0.34])
    table[b, [eos, a]] = torch.tensor([0.9, 0.1])
    log_table = table.log()

    def step(last, position, state):
        return log_table[last[:, 0]], state

    def search(beam_size):
        return beam_search(
            step,
            lambda state, rows: state,
            None,
            batch_size=2,
            beam_size=beam_size,
            bos_id=bos,
            eos_id=eos,
            pad_id=pad,
            max_new_tokens=6,
            length_penalty=0.0,
        )

    ids, scores = search(beam_size=2)
    assert ids.tolist() == [[b, eos], [b, eos]]
    torch.testing.assert_close(scores, torch.tensor([0.36, 0.36]).log())
    greedy, _ = search(beam_size=1)
    assert greedy[0, :2].tolist() == [a, a] and eos not in greedy[0].tolist()


def test_batched_generation_equals_one_by_one_with_padded_memory_and_entities(
    trained_toy_translator,
):
    _, head, source = trained_toy_translator
    sources = [s for s, _ in toy_pairs("copy", 5, seed=8)]
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        text = source(sources)
        counts = [0, 2, 1, 3, 2]
        states = torch.randn(5, 3, 32, generator=generator)
        entity_mask = torch.arange(3)[None, :] < torch.tensor(counts)[:, None]
        batch = make_fused(text.tokens, text.mask, states * entity_mask[..., None], entity_mask)
        batched = head.decode(head.generate(batch, beam_size=3))
        single = []
        for i, count in enumerate(counts):
            length = len(sources[i])
            one = make_fused(text.tokens[i : i + 1, :length], None, states[i : i + 1, :count])
            single.extend(head.decode(head.generate(one, beam_size=3)))
    assert batched == single


def test_translation_collates_decodes_and_round_trips_its_tokenizer():
    tokenizer = train_target_tokenizer(
        ["the cat sat on the mat", "a dog ate the hat", "Ｃafé  crème"] * 3, vocab_size=60
    )
    tokenizer.enable_padding(length=32)  # the head must not inherit padding or truncation
    tokenizer.enable_truncation(max_length=2)
    head = TranslationHead(D, tokenizer=tokenizer, num_layers=1, num_heads=2, ffn_dim=32)
    assert head.vocab_size == tokenizer.get_vocab_size()
    assert (head.pad_id, head.bos_id, head.eos_id) == (0, 1, 2)
    targets = head.collate_targets([{"target": "the cat"}, {"target": "Café  crème sat"}])
    ids = targets["target_ids"]
    assert ids[:, 0].tolist() == [1, 1] and (ids == 2).sum().item() == 2
    assert ids[0, -1].item() == 0  # the shorter target is padded
    decoded = head.decode(HeadOutput(logits=torch.zeros(2), predictions=ids[:, 1:]))
    assert decoded == ["the cat", "Café  crème sat"]  # NFKC-normalised, spaces kept

    fused = make_fused(torch.randn(2, 3, D))
    assert_round_trip(head, fused, target_ids=ids)
    rebuilt = build_head(json.loads(json.dumps(head_config(head))))
    assert rebuilt.tokenizer.encode("the mat").ids == head.tokenizer.encode("the mat").ids

    with pytest.raises(DataError, match=r"sample 1: .*field 'target', which is missing"):
        head.collate_targets([{"target": "the"}, {"text": "no target"}])
    no_tokenizer = TranslationHead(D, vocab_size=10, num_layers=1, num_heads=2)
    assert no_tokenizer.collate_targets([{"target": [5, 6]}])["target_ids"].tolist() == [
        [1, 5, 6, 2]
    ]
    with pytest.raises(DataError, match=r"sample 0: field 'target' is text"):
        no_tokenizer.collate_targets([{"target": "words"}])
    with pytest.raises(ConfigError, match="vocab_size"):
        TranslationHead(D)


# --------------------------------------------------------------------------- recommendation

NUM_USERS, NUM_ITEMS = 16, 20
COLD_ITEMS = {8, 9, 18, 19}  # never interacted with; only their KG entity says what they are


def genre(item: int) -> int:
    return 0 if item < 10 else 1


def user_genre(user: int) -> int:
    return 0 if user < 8 else 1


def entity_table() -> torch.Tensor:
    """Genre entities 0 and 1, then one entity per item that lies near its genre (as KG
    embeddings of same-genre items do)."""
    generator = torch.Generator().manual_seed(5)
    genres = torch.randn(2, D, generator=generator)
    items = genres[[genre(i) for i in range(NUM_ITEMS)]]
    return torch.cat([genres, items + 0.5 * torch.randn(NUM_ITEMS, D, generator=generator)])


ENTITY_TABLE = entity_table()


def item_context(items: list[int]) -> FusionOutput:
    """Each item's entity set: its own entity, then its genre entity (fixed features)."""
    entity_ids = torch.tensor([[2 + i, genre(i)] for i in items])
    return make_fused(torch.zeros(len(items), 0, D), entity_states=ENTITY_TABLE[entity_ids])


def preference_data(seed: int = 0):
    rng = random.Random(seed)
    history, samples = {}, []
    for user in range(NUM_USERS):
        liked = [i for i in range(NUM_ITEMS) if genre(i) == user_genre(user)]
        warm = [i for i in liked if i not in COLD_ITEMS]
        history[user] = rng.sample(warm, 4)
        disliked = [
            i for i in range(NUM_ITEMS) if genre(i) != user_genre(user) and i not in COLD_ITEMS
        ]
        for item in history[user]:
            samples.append({"user": user, "item": item, "label": 1})
            samples.append({"user": user, "item": rng.choice(disliked), "label": 0})
    return history, samples


def rec_head(loss: str) -> RecommendationHead:
    torch.manual_seed(0)
    return RecommendationHead(
        D, NUM_USERS, NUM_ITEMS, item_entity_ids=[2 + i for i in range(NUM_ITEMS)], loss=loss
    )


@pytest.mark.parametrize("loss", ["bce", "bpr"])
def test_recommendation_ranks_the_planted_preference_first(loss):
    history, samples = preference_data()
    head = rec_head(loss)
    head.set_history(history)
    if loss == "bpr":
        positives = [s for s in samples if s["label"] == 1]
        negatives = [s for s in samples if s["label"] == 0]
        samples = [{**p, "neg_item": n["item"]} for p, n in zip(positives, negatives)]
        rows = head.expand_samples(samples)
        assert [r["item"] for r in rows[len(samples) :]] == [s["neg_item"] for s in samples]
    else:
        rows = samples
    targets = head.collate_targets(samples)
    fused = item_context([r["item"] for r in rows])
    fit(head, lambda: head(fused, **targets).loss, steps=150, lr=3e-2)

    head.cache_items(torch.arange(NUM_ITEMS), item_context(list(range(NUM_ITEMS))))
    users = list(range(NUM_USERS))
    top = head.recommend(users, k=3)
    for user, items in zip(users, top):
        assert all(genre(i) == user_genre(user) for i in items), (user, items)
        assert not set(items) & set(history[user])
    scores = head.score_all(users)
    for user in users:
        assert torch.isinf(scores[user, history[user]]).all()
        cold_liked = [i for i in COLD_ITEMS if genre(i) == user_genre(user)]
        cold_other = [i for i in COLD_ITEMS if genre(i) != user_genre(user)]
        assert scores[user, cold_liked].min() > scores[user, cold_other].max()


def test_score_all_matches_forward_and_survives_a_round_trip():
    history, _ = preference_data()
    head = rec_head("bce").eval()
    head.set_history(history)
    all_items = list(range(NUM_ITEMS))
    head.cache_items(torch.arange(NUM_ITEMS), item_context(all_items))
    users = torch.tensor([0, 9])
    items = torch.tensor([15, 3])  # not in either user's history
    with torch.no_grad():
        pairwise = head(item_context(items.tolist()), user_ids=users, item_ids=items).logits
    ranked = head.score_all(users, exclude={})
    torch.testing.assert_close(pairwise, ranked[torch.arange(2), items])
    assert not torch.isinf(ranked).any()
    assert head.score_all([0], exclude={0: {1, 2}})[0, [1, 2]].isinf().all()

    rebuilt = build_head(json.loads(json.dumps(head_config(head)))).eval()
    rebuilt.load_state_dict(head.state_dict())
    rebuilt.cache_items(torch.arange(NUM_ITEMS), item_context(all_items))
    torch.testing.assert_close(rebuilt.score_all(users), head.score_all(users))
    assert len(head.recommend([0], k=NUM_ITEMS)[0]) == NUM_ITEMS - len(history[0])


def test_recommendation_rejects_bad_samples():
    head = rec_head("bce")
    with pytest.raises(
        DataError, match=r"sample 1: field 'user' must be an integer id in \[0, 16\)"
    ):
        head.collate_targets([{"user": 0, "item": 1, "label": 1}, {"user": 99, "item": 1}])
    with pytest.raises(DataError, match=r"sample 0: field 'label' must be 0 or 1, got 3"):
        head.collate_targets([{"user": 0, "item": 1, "label": 3}])
    with pytest.raises(DataError, match=r"field 'neg_item', which is missing"):
        rec_head("bpr").collate_targets([{"user": 0, "item": 1}])
    with pytest.raises(DataError, match=r"history of user 2 holds \[20\], not item ids"):
        head.set_history({2: [NUM_ITEMS]})
    with pytest.raises(DataError, match=r"user -1 is not an id in \[0, 16\)"):
        head.set_history({-1: [0]})
    with pytest.raises(ConfigError, match="item_entity_ids has 3 entries"):
        RecommendationHead(D, 2, 4, item_entity_ids=[0, 1, 2])
