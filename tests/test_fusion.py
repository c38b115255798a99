"""KnowledgeFusion: shapes, zero-gate equivalence, masking, retrieval, randomisation, learning."""

from __future__ import annotations

import itertools
import json
import math

import pytest
import torch
import torch.nn.functional as F

from kgmm.errors import ConfigError, DataError
from kgmm.fusion import FusionConfig, FusionOutput, KnowledgeFusion

DIMS = {"text": 12, "image": 8, "audio": 6}
NUM_ENTITIES = 20
ENTITY_DIM = 8


def make_fusion(**overrides) -> KnowledgeFusion:
    torch.manual_seed(0)
    settings = dict(
        d_model=16,
        num_heads=2,
        num_layers=2,
        dropout=0.0,
        entity_dim=ENTITY_DIM,
        num_relations=3,
        retrieval_top_k=3,
    )
    settings.update(overrides)
    return KnowledgeFusion(FusionConfig(**settings), DIMS).eval()


def make_inputs(names=("text", "image", "audio"), batch=4, seed=1) -> dict:
    """Random tokens with ragged masks, one empty image row; padded entity slots hold junk ids."""
    gen = torch.Generator().manual_seed(seed)
    lengths = {"text": 7, "image": 5, "audio": 6}
    modalities = {}
    for name in names:
        tokens = torch.randn(batch, lengths[name], DIMS[name], generator=gen)
        real = torch.randint(1, lengths[name] + 1, (batch,), generator=gen)
        mask = torch.arange(lengths[name])[None, :] < real[:, None]
        if name == "image":
            mask[1] = False
        modalities[name] = (tokens, mask)
    entity_mask = torch.tensor([[1, 1, 1, 0], [1, 0, 0, 0], [0, 0, 0, 0], [1, 1, 1, 1]]).bool()
    entity_ids = torch.randint(0, NUM_ENTITIES, (batch, 4), generator=gen)
    relations = torch.randint(0, 7, (batch, 4), generator=gen)
    return dict(
        modalities=modalities,
        pooled={name: torch.randn(batch, DIMS[name], generator=gen) for name in names},
        entity_ids=entity_ids.masked_fill(~entity_mask[:batch], 10**6),
        entity_mask=entity_mask[:batch],
        entity_relations=relations.masked_fill(~entity_mask[:batch], 10**6),
        entity_hops=torch.randint(0, 3, (batch, 4), generator=gen),
        entity_table=torch.randn(NUM_ENTITIES, ENTITY_DIM, generator=gen),
    )


def open_gates(fusion: KnowledgeFusion, value: float = 0.7) -> None:
    with torch.no_grad():
        for layer in fusion.layers:
            layer.cross_attn_gate.gate.fill_(value)


def with_knowledge(fusion: KnowledgeFusion, mode: str) -> KnowledgeFusion:
    """Same parameters, another knowledge mode."""
    config = FusionConfig.from_dict({**fusion.config.to_dict(), "knowledge": mode})
    other = KnowledgeFusion(config, fusion.modality_dims).eval()
    other.load_state_dict(fusion.state_dict())
    return other


def test_config_round_trips_through_json():
    config = FusionConfig(d_model=32, num_heads=4, retrieval_modalities=("image",))
    assert FusionConfig.from_dict(json.loads(json.dumps(config.to_dict()))) == config


@pytest.mark.parametrize(
    "settings, field",
    [
        ({"d_model": 30, "num_heads": 4}, "d_model"),
        ({"knowledge": "maybe"}, "knowledge"),
        ({"retrieval_modalities": ("video",)}, "retrieval_modalities"),
    ],
)
def test_config_rejects_bad_values_naming_the_field(settings, field):
    with pytest.raises(ConfigError, match=field):
        FusionConfig(**settings)


def test_config_from_dict_rejects_unknown_fields():
    with pytest.raises(ConfigError, match="d_modle"):
        FusionConfig.from_dict({"d_modle": 8})


SUBSETS = [c for r in (1, 2, 3) for c in itertools.combinations(("text", "image", "audio"), r)]


@pytest.mark.parametrize("names", SUBSETS, ids="+".join)
@pytest.mark.parametrize("with_entities", [True, False], ids=["entities", "no-entities"])
def test_output_shapes_for_every_modality_subset(names, with_entities):
    fusion = make_fusion()
    inputs = make_inputs(names)
    if not with_entities:
        inputs = {"modalities": inputs["modalities"]}
    out = fusion(**inputs)

    assert isinstance(out, FusionOutput)
    total = sum(tokens.shape[1] for tokens, _ in inputs["modalities"].values())
    assert out.tokens.shape == (4, total, 16)
    assert out.mask.shape == (4, total)
    assert out.pooled.shape == (4, 16)
    assert list(out.modality_slices) == list(names)
    for name, (_, mask) in inputs["modalities"].items():
        assert torch.equal(out.mask[:, out.modality_slices[name]], mask)
    retrieved = 3 * len([n for n in names if n in ("image", "audio")]) if with_entities else 0
    entities = 4 + retrieved if with_entities else 0
    assert out.entity_ids.shape == out.entity_mask.shape == (4, entities)
    assert out.entity_attention.shape == out.entity_source.shape == (4, entities)
    assert out.entity_states.shape == (4, entities, 16)
    assert torch.isfinite(out.tokens).all() and torch.isfinite(out.pooled).all()


def test_attention_projections_are_named_for_peft():
    names = {name.rsplit(".", 1)[-1] for name, _ in make_fusion().named_modules()}
    assert {"q_proj", "k_proj", "v_proj", "out_proj"} <= names


def test_peft_lora_wraps_the_attention_projections():
    peft = pytest.importorskip("peft")
    targets = ["q_proj", "k_proj", "v_proj", "out_proj"]
    model = peft.get_peft_model(make_fusion(), peft.LoraConfig(r=2, target_modules=targets))
    model(**make_inputs()).pooled.sum().backward()
    lora_grads = [p.grad for n, p in model.named_parameters() if "lora_B" in n]
    assert len(lora_grads) == 4 * 2 * 2  # 4 projections x 2 attentions x 2 layers
    assert all(grad is not None for grad in lora_grads)


def test_opacus_per_sample_gradients_sum_to_the_batch_gradient():
    opacus = pytest.importorskip("opacus")
    fusion = make_fusion().train()
    open_gates(fusion)
    model = opacus.GradSampleModule(fusion, loss_reduction="sum")
    model(**make_inputs()).pooled.square().sum().backward()
    for name, param in fusion.named_parameters():
        assert param.grad_sample.shape[0] == 4, name
        torch.testing.assert_close(param.grad_sample.sum(0), param.grad, atol=1e-5, rtol=1e-4)


def test_zero_gate_output_equals_knowledge_off_bit_for_bit():
    fusion = make_fusion()
    inputs = make_inputs()
    on = fusion(**inputs)
    off = with_knowledge(fusion, "off")(**inputs)
    assert fusion.gate_values() == [0.0, 0.0]
    assert on.entity_ids.shape[1] > 0 and off.entity_ids.shape[1] == 0
    assert torch.equal(on.tokens, off.tokens)
    assert torch.equal(on.pooled, off.pooled)


def test_empty_entity_rows_match_off_even_with_open_gate():
    fusion = make_fusion()
    open_gates(fusion)
    inputs = make_inputs(("text",))
    on = fusion(**inputs)
    off = with_knowledge(fusion, "off")(**inputs)

    empty = ~on.entity_mask.any(dim=1)
    assert empty.tolist() == [False, False, True, False]
    assert torch.isfinite(on.tokens).all()
    assert torch.equal(on.tokens[empty], off.tokens[empty])
    assert not torch.allclose(on.tokens[~empty], off.tokens[~empty])
    assert torch.equal(on.entity_attention[empty], torch.zeros_like(on.entity_attention[empty]))


def test_sample_output_does_not_depend_on_batch_padding():
    fusion = make_fusion()
    open_gates(fusion)
    inputs = make_inputs()
    alone = {
        "modalities": {
            name: (tokens[:1, : int(mask[0].sum())], mask[:1, : int(mask[0].sum())])
            for name, (tokens, mask) in inputs["modalities"].items()
        },
        "pooled": {name: vector[:1] for name, vector in inputs["pooled"].items()},
        "entity_ids": inputs["entity_ids"][:1, :3],
        "entity_mask": inputs["entity_mask"][:1, :3],
        "entity_relations": inputs["entity_relations"][:1, :3],
        "entity_hops": inputs["entity_hops"][:1, :3],
        "entity_table": inputs["entity_table"],
    }
    batched = fusion(**inputs)
    single = fusion(**alone)

    for name, part in single.modality_slices.items():
        length = part.stop - part.start
        start = batched.modality_slices[name].start
        torch.testing.assert_close(
            single.tokens[0, part], batched.tokens[0, start : start + length], atol=1e-5, rtol=0
        )
    torch.testing.assert_close(single.pooled[0], batched.pooled[0], atol=1e-5, rtol=0)
    kept = batched.entity_mask[0]
    torch.testing.assert_close(
        single.entity_attention[0][single.entity_mask[0]],
        batched.entity_attention[0][kept],
        atol=1e-5,
        rtol=0,
    )


def test_entity_attention_rows_sum_to_one_where_entities_exist():
    fusion = make_fusion()
    open_gates(fusion)
    out = fusion(**make_inputs(("text",)))
    sums = out.entity_attention.sum(dim=1)
    torch.testing.assert_close(sums, torch.tensor([1.0, 1.0, 0.0, 1.0]))
    assert (out.entity_attention[~out.entity_mask] == 0).all()


def test_bf16_autocast_keeps_zero_gate_equivalence_and_attention_sums():
    fusion = make_fusion()
    inputs = make_inputs(("text",))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        on = fusion(**inputs)
        off = with_knowledge(fusion, "off")(**inputs)
    assert torch.equal(on.tokens, off.tokens)
    assert on.entity_attention.dtype == torch.float32
    torch.testing.assert_close(on.entity_attention.sum(dim=1), torch.tensor([1.0, 1.0, 0.0, 1.0]))


def test_retrieval_picks_the_planted_nearest_entity():
    fusion = make_fusion(retrieval_modalities=("image",), retrieval_top_k=2)
    with torch.no_grad():
        fusion.retriever.proj["image"].weight.copy_(torch.eye(ENTITY_DIM))
        fusion.retriever.proj["image"].bias.zero_()
    inputs = make_inputs(("text", "image"))
    planted = torch.tensor([5, 11, 2, 17])
    inputs["pooled"]["image"] = inputs["entity_table"][planted]
    out = fusion(**inputs)

    retrieved = out.entity_ids[:, 4:]
    assert torch.equal(retrieved[:, 0], planted)
    assert (out.entity_source[:, 4:] == fusion.entity_source_names.index("image")).all()
    assert out.entity_mask[:, 4:].tolist() == [[True, True], [False, False]] + [[True, True]] * 2


def test_random_knowledge_replaces_ids_reproducibly():
    fusion = make_fusion()
    inputs = make_inputs()
    on = fusion(**inputs)
    randomised = with_knowledge(fusion, "random")
    first = randomised(**inputs, generator=torch.Generator().manual_seed(3))
    again = randomised(**inputs, generator=torch.Generator().manual_seed(3))
    other = randomised(**inputs, generator=torch.Generator().manual_seed(4))

    assert torch.equal(first.entity_mask, on.entity_mask)
    assert not torch.equal(first.entity_ids[on.entity_mask], on.entity_ids[on.entity_mask])
    assert ((first.entity_ids >= 0) & (first.entity_ids < NUM_ENTITIES)).all()
    assert torch.equal(first.entity_ids, again.entity_ids)
    assert torch.equal(first.tokens, again.tokens)
    assert not torch.equal(first.entity_ids, other.entity_ids)


def test_random_knowledge_also_redraws_the_relations_neighbours_were_reached_by():
    fusion = make_fusion()
    open_gates(fusion)
    randomised = with_knowledge(fusion, "random").eval()
    inputs = make_inputs()
    other = dict(inputs)
    relations = inputs["entity_relations"]
    other["entity_relations"] = torch.where(relations > 0, (relations % 6) + 1, relations)
    assert not torch.equal(other["entity_relations"], relations)
    first = randomised(**inputs, generator=torch.Generator().manual_seed(3))
    second = randomised(**other, generator=torch.Generator().manual_seed(3))
    # only "seed or not" of the given relations survives randomisation
    assert torch.equal(first.tokens, second.tokens)
    fusion.eval()
    assert not torch.equal(fusion(**inputs).tokens, fusion(**other).tokens)


def test_gradients_reach_gate_retrieval_projection_and_entity_table():
    fusion = make_fusion()
    inputs = make_inputs()
    inputs["entity_table"].requires_grad_(True)
    fusion(**inputs).pooled.square().sum().backward()
    assert fusion.layers[0].cross_attn_gate.gate.grad.abs() > 0

    fusion.zero_grad()
    open_gates(fusion)
    inputs["entity_table"].grad = None
    fusion(**inputs).pooled.square().sum().backward()
    for name in ("image", "audio"):
        assert fusion.retriever.proj[name].weight.grad.abs().sum() > 0
    assert inputs["entity_table"].grad.abs().sum() > 0


def test_knowledge_off_returns_an_empty_entity_set():
    out = with_knowledge(make_fusion(), "off")(**make_inputs())
    assert out.entity_ids.shape == out.entity_attention.shape == (4, 0)
    assert out.entity_states.shape == (4, 0, 16)


def test_input_errors_name_the_problem():
    fusion = make_fusion()
    inputs = make_inputs(("text",))
    with pytest.raises(ConfigError, match="video"):
        fusion({"video": (torch.zeros(4, 2, 3), torch.ones(4, 2, dtype=torch.bool))})
    with pytest.raises(DataError, match="'text'.*12"):
        fusion({"text": (torch.zeros(4, 2, 5), torch.ones(4, 2, dtype=torch.bool))})
    with pytest.raises(DataError, match="entity_table"):
        fusion(inputs["modalities"], entity_ids=inputs["entity_ids"])


def train_on_entity_signal(knowledge: str, max_steps: int) -> tuple[float, float]:
    """Label = whether entity 3 is in the sample's set; the text carries nothing.

    Trains full-batch until the loss falls below 0.05 or ``max_steps``; returns the last loss
    and the positive rate.
    """
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    batch = 64
    table = torch.randn(10, ENTITY_DIM, generator=gen)
    ids = torch.stack([torch.randperm(10, generator=gen)[:3] for _ in range(batch)])
    labels = (ids == 3).any(dim=1).float()
    text = torch.randn(1, 4, DIMS["text"], generator=gen).expand(batch, -1, -1)
    modalities = {"text": (text, torch.ones(batch, 4, dtype=torch.bool))}

    config = FusionConfig(d_model=16, num_heads=2, dropout=0.0, entity_dim=ENTITY_DIM)
    fusion = KnowledgeFusion(FusionConfig(**{**config.to_dict(), "knowledge": knowledge}), DIMS)
    head = torch.nn.Linear(16, 1)
    params = [*fusion.parameters(), *head.parameters()]
    optimizer = torch.optim.Adam(params, lr=1e-2)
    for _ in range(max_steps):
        pooled = fusion(modalities, entity_ids=ids, entity_table=table).pooled
        loss = F.binary_cross_entropy_with_logits(head(pooled).squeeze(-1), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if loss.item() < 0.05:
            break
    return loss.item(), labels.mean().item()


def test_knowledge_helps_when_it_carries_signal():
    on_loss, rate = train_on_entity_signal("on", max_steps=300)
    off_loss, _ = train_on_entity_signal("off", max_steps=60)
    chance = -(rate * math.log(rate) + (1 - rate) * math.log(1 - rate))
    assert on_loss < 0.1
    assert off_loss > chance - 0.01
