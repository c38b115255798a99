"""FusedModel: every modality mix, zero-gate equivalence, save/load, errors, overfitting."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest
import soundfile
import torch
from PIL import Image

import kgmm
from kgmm import DataError, FusedConfig, FusedModel, KnowledgeGraph
from kgmm.fusion import FusionConfig

TINY_TEXT = {
    "config_overrides": {
        "num_hidden_layers": 1,
        "hidden_size": 32,
        "num_attention_heads": 2,
        "intermediate_size": 64,
    },
    "random_init": True,
    "max_length": 32,
}
TINY_IMAGE = {"backbone": "mobilenet_v3_small", "image_size": 32}
TINY_AUDIO = {"kind": "spectrogram", "n_mels": 16, "d_model": 32, "num_layers": 1, "num_heads": 2}
LABELS = ["viral", "bacterial"]


@pytest.fixture(scope="module")
def kg() -> KnowledgeGraph:
    return KnowledgeGraph.from_triples(
        [
            ("influenza", "caused_by", "influenza virus"),
            ("influenza", "has_symptom", "fever"),
            ("strep throat", "caused_by", "streptococcus"),
            ("strep throat", "has_symptom", "sore throat"),
            ("amoxicillin", "treats", "strep throat"),
            ("oseltamivir", "treats", "influenza"),
        ],
        entities=[{"entity": "influenza", "aliases": "flu"}],
    )


@pytest.fixture
def media(tmp_path):
    rng = np.random.default_rng(0)
    paths = {}
    for i in range(2):
        image = tmp_path / f"img{i}.png"
        Image.fromarray(rng.integers(0, 255, (20, 24, 3), dtype=np.uint8)).save(image)
        audio = tmp_path / f"clip{i}.wav"
        soundfile.write(audio, rng.standard_normal(8000 + 2000 * i).astype(np.float32) * 0.1, 16000)
        paths[f"image{i}"], paths[f"audio{i}"] = str(image), str(audio)
    return paths


def build(kg, modalities=("text", "image", "audio"), knowledge="on", seed=0) -> FusedModel:
    config = FusedConfig(
        text=TINY_TEXT if "text" in modalities else None,
        image=TINY_IMAGE if "image" in modalities else None,
        audio=TINY_AUDIO if "audio" in modalities else None,
        fusion=FusionConfig(
            d_model=32, num_heads=2, dropout=0.0, knowledge=knowledge, retrieval_top_k=2
        ),
        heads={"cause": {"type": "classification", "labels": LABELS, "dropout": 0.0}},
        entity_embeddings={"source": "random", "dim": 16},
        seed=seed,
    )
    return FusedModel(config, kg=kg)


def samples(media, modalities):
    texts = ["Flu with fever since Monday", "strep throat and a sore throat"]
    rows = []
    for i in range(2):
        row = {"label": LABELS[i]}
        if "text" in modalities:
            row["text"] = texts[i]
        if "image" in modalities:
            row["image"] = media[f"image{i}"]
        if "audio" in modalities:
            row["audio"] = media[f"audio{i}"]
        rows.append(row)
    return rows


ALL_SUBSETS = [c for n in (1, 2, 3) for c in itertools.combinations(("text", "image", "audio"), n)]


@pytest.mark.parametrize("modalities", ALL_SUBSETS, ids="+".join)
def test_shapes_for_every_modality_combination(kg, media, modalities):
    model = build(kg, modalities)
    batch = model.collator("cause")(samples(media, modalities))
    out = model(task="cause", **batch)
    assert out.logits.shape == (2, len(LABELS))
    assert out.loss is not None and torch.isfinite(out.loss)
    assert out.entity_attention.shape == out.entity_ids.shape == out.entity_mask.shape
    if "text" in modalities:  # linked entities: rows of attention sum to 1
        sums = out.entity_attention.sum(dim=1)
        assert torch.allclose(sums, torch.ones(2), atol=1e-5)
    assert out.fused.tokens.shape[0] == 2


def test_text_linking_puts_mentioned_entities_first(kg, media):
    model = build(kg, ("text",))
    batch = model.collator("cause")(samples(media, ("text",)))
    first = batch["entity_ids"][:, 0].tolist()
    assert first == [kg.entity_id("influenza"), kg.entity_id("strep throat")]
    assert batch["entity_hops"][0, 0] == 0 and batch["entity_mask"].any(dim=1).all()


def test_zero_gate_makes_knowledge_on_equal_to_off_at_init(kg, media):
    model = build(kg).eval()
    batch = model.collator("cause")(samples(media, ("text", "image", "audio")))
    with torch.no_grad():
        on = model(task="cause", **batch).logits
        model.set_knowledge("off")
        off = model(task="cause", **batch).logits
    assert torch.equal(on, off)


def test_missing_modalities_within_one_batch(kg, media):
    model = build(kg).eval()
    rows = [
        {"text": "flu", "label": "viral"},
        {"image": media["image0"], "label": "bacterial"},
        {"audio": media["audio1"], "text": "sore throat", "label": "bacterial"},
    ]
    batch = model.collator("cause")(rows)
    assert batch["image"]["index"].tolist() == [1] and batch["audio"]["index"].tolist() == [2]
    out = model(task="cause", **batch)
    assert out.logits.shape == (3, 2)
    # a sample predicted alone gives the same logits as inside the mixed batch
    alone = model(task="cause", **model.collator("cause")(rows[1:2])).logits
    assert torch.allclose(alone, out.logits[1:2], atol=1e-5)


def test_save_and_load_give_identical_outputs(kg, media, tmp_path):
    model = build(kg).eval()
    with torch.no_grad():  # open the gate so the knowledge path matters
        for layer in model.fusion.layers:
            layer.cross_attn_gate.gate.fill_(0.5)
    rows = samples(media, ("text", "image", "audio"))
    model.save_pretrained(tmp_path / "ckpt")
    assert {"config.json", "model.safetensors", "graph.tsv"} <= {
        p.name for p in (tmp_path / "ckpt").iterdir()
    }
    loaded = FusedModel.from_pretrained(tmp_path / "ckpt")
    with torch.no_grad():
        a = model(task="cause", **model.collator("cause")(rows))
        b = loaded(task="cause", **loaded.collator("cause")(rows))
    assert torch.equal(a.logits, b.logits)
    assert torch.equal(a.entity_ids, b.entity_ids)
    assert loaded.predict(rows, task="cause") == model.predict(rows, task="cause")


def test_knowledge_off_defers_embedding_the_entities_until_turned_on(kg, tmp_path):
    config = FusedConfig(
        text=TINY_TEXT,
        fusion=FusionConfig(d_model=32, num_heads=2, dropout=0.0, knowledge="off"),
        heads={"cause": {"type": "classification", "labels": LABELS}},
    )
    model = FusedModel(config, kg=kg).eval()
    assert model.entity_table is None
    assert "entity_table" not in model.state_dict()
    rows = [{"text": "flu and fever", "label": "viral"}]
    with torch.no_grad():
        off = model(task="cause", **model.collator("cause")(rows))
    assert off.entity_ids.shape[1] == 0  # nothing linked while off

    model.save_pretrained(tmp_path / "off")
    loaded = FusedModel.from_pretrained(tmp_path / "off")
    assert loaded.entity_table is None

    model.set_knowledge("on")
    expected = kgmm.EntityEmbeddings.from_text(kg).vectors
    assert torch.allclose(model.entity_table, expected)
    with torch.no_grad():
        on = model(task="cause", **model.collator("cause")(rows))
    assert kg.entity_id("influenza") in on.entity_ids[0].tolist()
    loaded.set_knowledge("random")
    assert loaded.entity_table.shape == (kg.num_entities, 384)


def test_from_pretrained_refuses_a_folder_without_weights(tmp_path):
    (tmp_path / "config.json").write_text("{}")
    with pytest.raises(kgmm.CheckpointError, match="missing model.safetensors"):
        FusedModel.from_pretrained(tmp_path)


def test_unreadable_media_name_path_and_sample(kg, media, tmp_path):
    model = build(kg)
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"not an image")
    rows = [{"image": media["image0"], "label": "viral"}, {"image": str(broken), "label": "viral"}]
    with pytest.raises(DataError, match=r"sample 1, field 'image': .*broken\.png"):
        model.collator("cause")(rows)
    rows = [{"audio": str(tmp_path / "missing.wav"), "label": "viral"}]
    with pytest.raises(DataError, match=r"sample 0, field 'audio': .*missing\.wav"):
        model.collator("cause")(rows)


def test_modality_the_model_lacks_is_an_error(kg, media):
    model = build(kg, ("text",))
    with pytest.raises(DataError, match="no image encoder"):
        model.collator("cause")([{"image": media["image0"], "label": "viral"}])


def test_sample_with_nothing_to_predict_from_is_an_error_naming_its_fields(kg):
    model = build(kg, ("text",))
    rows = [{"text": "flu", "label": "viral"}, {"txt": "flu", "label": "viral"}]  # a typo
    message = r"sample 1 \(fields: txt, label\) has none of text, image, audio, entities"
    with pytest.raises(DataError, match=message):
        model.collator("cause")(rows)
    with pytest.raises(DataError, match="has none of text"):
        model.predict(rows, "cause")  # not predicted from an empty input
    with_entities = [rows[0], {"entities": ["influenza"], "label": "viral"}]  # an input too
    assert model.collator("cause")(with_entities)["entity_mask"][1].any()


def test_same_seed_same_outputs(kg, media):
    rows = samples(media, ("text", "image", "audio"))
    outs = []
    for _ in range(2):
        model = build(kg, seed=3).eval()
        with torch.no_grad():
            outs.append(model(task="cause", **model.collator("cause")(rows)).logits)
    assert torch.equal(outs[0], outs[1])


def test_config_round_trips_through_json(kg, tmp_path):
    config = build(kg, ("text",)).config
    config.save(tmp_path / "c.json")
    again = FusedConfig.load(tmp_path / "c.json")
    assert again.to_dict() == config.to_dict()
    assert json.loads((tmp_path / "c.json").read_text())["fusion"]["knowledge"] == "on"
    with pytest.raises(kgmm.ConfigError, match="unknown fields"):
        FusedConfig.from_dict({**config.to_dict(), "bogus": 1})


def test_tiny_trimodal_model_overfits_a_small_batch(kg, media):
    torch.manual_seed(0)
    model = build(kg)
    rows = samples(media, ("text", "image", "audio")) * 2
    batch = model.collator("cause")(rows)
    optimizer = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(40):
        loss = model(task="cause", **batch).loss
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert loss.item() < 0.05
    assert model.predict(rows[:2], task="cause") == LABELS
    # predict batches longest text first (the bacterial text is longer): results come
    # back in the order the samples went in, whatever the batch size
    mixed = [rows[1], rows[0], rows[0], rows[1]]
    assert model.predict(mixed, task="cause", batch_size=3) == [LABELS[i] for i in (1, 0, 0, 1)]


def test_longest_first_orders_by_text_length_and_keeps_ties_in_place():
    from kgmm.data import longest_first, text_lengths

    rows = [
        {"text": "ab"},
        {"text": "abcd"},
        {"image": "x.png"},
        {"text": ["ab", "cde"]},
        {"text": "cd"},
    ]
    assert text_lengths(rows) == [2, 4, 0, 5, 2]
    assert longest_first(rows) == [3, 1, 0, 4, 2]
