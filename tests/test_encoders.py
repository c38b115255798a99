"""Modality encoders: shapes, masks, padding, freezing, preprocessing and weight loading."""

from __future__ import annotations

from multiprocessing.reduction import ForkingPickler

import numpy as np
import pytest
import soundfile
import torch
import torchaudio
import torchvision
from PIL import Image
from safetensors.torch import save_file
from torchvision.models import VisionTransformer

from kgmm.encoders import (
    AudioEncoder,
    AudioPreprocessor,
    EncoderOutput,
    ImageEncoder,
    ImagePreprocessor,
    TextEncoder,
    default_text_model_path,
)
from kgmm.encoders.image_backbones import token_backbone
from kgmm.encoders.output import masked_mean
from kgmm.encoders.text import find_layer_list
from kgmm.errors import CheckpointError, ConfigError, DataError

TINY_BERT = {
    "num_hidden_layers": 3,
    "hidden_size": 32,
    "num_attention_heads": 2,
    "intermediate_size": 64,
}
TINY_WAV2VEC2 = {
    "extractor_mode": "layer_norm",
    "extractor_conv_layer_config": [(16, 10, 5), (16, 3, 2), (16, 2, 2)],
    "extractor_conv_bias": False,
    "encoder_embed_dim": 32,
    "encoder_projection_dropout": 0.0,
    "encoder_pos_conv_kernel": 16,
    "encoder_pos_conv_groups": 4,
    "encoder_num_layers": 1,
    "encoder_num_heads": 2,
    "encoder_attention_dropout": 0.0,
    "encoder_ff_interm_features": 64,
    "encoder_ff_interm_dropout": 0.0,
    "encoder_dropout": 0.0,
    "encoder_layer_norm_first": False,
    "encoder_layer_drop": 0.0,
    "aux_num_out": None,
}


@pytest.fixture(scope="module")
def tiny_text() -> TextEncoder:
    torch.manual_seed(0)
    return TextEncoder(random_init=True, config_overrides=TINY_BERT).eval()


def encode(encoder: torch.nn.Module, items: list) -> EncoderOutput:
    with torch.no_grad():
        return encoder(**encoder.preprocessor(items))


def test_masked_mean_ignores_padding_and_pools_empty_rows_to_zero() -> None:
    tokens = torch.tensor([[[1.0], [3.0], [100.0]], [[5.0], [6.0], [7.0]]])
    mask = torch.tensor([[True, True, False], [False, False, False]])
    assert masked_mean(tokens, mask).tolist() == [[2.0], [0.0]]


# --- text ---------------------------------------------------------------------------------


def test_text_output_shapes_and_mask(tiny_text: TextEncoder) -> None:
    batch = tiny_text.preprocessor(["a short one", "a somewhat longer sentence than the first"])
    out = tiny_text(**batch)
    length = batch["input_ids"].shape[1]
    assert out.tokens.shape == (2, length, 32)
    assert out.pooled.shape == (2, 32)
    assert tiny_text.output_dim == 32
    assert tiny_text.model.config._attn_implementation == "sdpa"
    assert torch.equal(out.mask, batch["attention_mask"].bool())
    assert out.mask[0].sum() < out.mask[1].sum() == length


def test_text_batch_is_padded_to_its_longest_item_not_max_length(tiny_text: TextEncoder) -> None:
    batch = tiny_text.preprocessor(["flu", "fever and a dry cough"])
    assert tiny_text.preprocessor.max_length == 512
    assert batch["input_ids"].shape == (2, 7)  # [CLS] fever and a dry cough [SEP]
    assert set(batch) == {"input_ids", "token_type_ids", "attention_mask"}


def test_text_truncates_to_max_length() -> None:
    encoder = TextEncoder(random_init=True, config_overrides=TINY_BERT, max_length=8)
    batch = encoder.preprocessor(["word " * 50])
    assert batch["input_ids"].shape == (1, 8)


def test_text_left_truncation_keeps_the_question_and_the_end_of_the_context() -> None:
    encoder = TextEncoder(
        random_init=True, config_overrides=TINY_BERT, max_length=12, truncation_side="left"
    )
    context = "background words here then " * 5 + "results showed benefit"
    ids = encoder.preprocessor([("does it work?", context)])["input_ids"][0]
    text = encoder.tokenizer.decode(ids, skip_special_tokens=True)
    assert text.startswith("does it work?") and text.endswith("results showed benefit")
    assert len(ids) == 12


def test_text_rejects_an_unknown_truncation_side() -> None:
    with pytest.raises(ConfigError, match="truncation_side must be 'right' or 'left'"):
        TextEncoder(random_init=True, config_overrides=TINY_BERT, truncation_side="middle")


def test_text_pairs_get_segment_ids(tiny_text: TextEncoder) -> None:
    batch = tiny_text.preprocessor([("what causes flu?", "a virus"), "a single text"])
    assert batch["token_type_ids"][0].max() == 1
    assert batch["token_type_ids"][1].max() == 0


def test_text_rejects_non_text_items(tiny_text: TextEncoder) -> None:
    with pytest.raises(DataError, match="text item 1"):
        tiny_text.preprocessor(["fine", 42])


def test_text_pooled_vector_does_not_depend_on_padding(tiny_text: TextEncoder) -> None:
    alone = encode(tiny_text, ["fever"]).pooled[0]
    batched = encode(tiny_text, ["fever", "a much longer sentence about a dry cough"]).pooled[0]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def trainable_names(module: torch.nn.Module) -> set[str]:
    return {name for name, parameter in module.named_parameters() if parameter.requires_grad}


def test_trainable_top_layers_freezes_embeddings_and_lower_layers() -> None:
    encoder = TextEncoder(random_init=True, config_overrides=TINY_BERT, trainable_top_layers=1)
    trainable = trainable_names(encoder.model)
    assert trainable
    assert all(name.startswith("encoder.layer.2.") for name in trainable)
    assert trainable == {
        name for name, _ in encoder.model.named_parameters() if name.startswith("encoder.layer.2.")
    }


def test_freeze_embeddings_fixes_only_the_token_embeddings() -> None:
    default = TextEncoder(random_init=True, config_overrides=TINY_BERT)
    encoder = TextEncoder(random_init=True, config_overrides=TINY_BERT, freeze_embeddings=True)
    newly_frozen = trainable_names(default.model) - trainable_names(encoder.model)
    assert newly_frozen == {"embeddings.word_embeddings.weight"}
    batch = encoder.preprocessor(["a card payment", "top up"])
    encoder(**batch).tokens.sum().backward()
    assert encoder.model.get_input_embeddings().weight.grad is None
    assert encoder.model.encoder.layer[0].attention.self.query.weight.grad is not None


def test_freeze_trains_nothing_and_keeps_eval_mode() -> None:
    encoder = TextEncoder(random_init=True, config_overrides=TINY_BERT, freeze=True)
    encoder.train()
    assert trainable_names(encoder) == set()
    assert not encoder.model.training


def test_trainable_top_layers_out_of_range_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="has 3 layers"):
        TextEncoder(random_init=True, config_overrides=TINY_BERT, trainable_top_layers=4)


def test_layer_list_not_found_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cannot find the transformer layers of Linear"):
        find_layer_list(torch.nn.Linear(2, 2))


def test_unknown_config_override_is_named() -> None:
    with pytest.raises(ConfigError, match="num_hiden_layers"):
        TextEncoder(random_init=True, config_overrides={"num_hiden_layers": 1})


def test_text_architecture_round_trips_without_original_weights(
    tiny_text: TextEncoder, tmp_path
) -> None:
    tiny_text.save_architecture(tmp_path)
    rebuilt = TextEncoder(str(tmp_path), random_init=True).eval()
    rebuilt.load_state_dict(tiny_text.state_dict())
    items = ["fever and a dry cough", ("question?", "context")]
    assert rebuilt.preprocessor(items)["input_ids"].tolist() == (
        tiny_text.preprocessor(items)["input_ids"].tolist()
    )
    torch.testing.assert_close(encode(rebuilt, items).pooled, encode(tiny_text, items).pooled)


def test_default_minilm_checkpoint_gives_meaningful_sentence_vectors() -> None:
    encoder = TextEncoder().eval()
    assert default_text_model_path().endswith("model")
    assert encoder.output_dim == 384
    sentences = ["fever and a dry cough", "a cough and high temperature", "the stock market fell"]
    pooled = torch.nn.functional.normalize(encode(encoder, sentences).pooled, dim=-1)
    assert pooled.shape == (3, 384)
    similar, unrelated = pooled[0] @ pooled[1], pooled[0] @ pooled[2]
    assert similar > 0.5
    assert unrelated < similar


# --- images --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("backbone", "image_size", "tokens", "dim"),
    [("resnet18", 64, 4, 512), ("mobilenet_v3_small", 64, 4, 576)],
)
def test_image_encoders_produce_token_grids(backbone, image_size, tokens, dim) -> None:
    torch.manual_seed(0)
    encoder = ImageEncoder(backbone, image_size=image_size).eval()
    out = encode(encoder, [np.zeros((8, 8)), np.full((5, 7, 3), 200, dtype=np.uint8)])
    assert encoder.output_dim == dim
    assert out.tokens.shape == (2, tokens, dim)
    assert out.pooled.shape == (2, dim)
    assert out.mask.all() and out.mask.shape == (2, tokens)


def test_vit_gives_patch_tokens_and_class_token_as_pooled() -> None:
    torch.manual_seed(0)
    vit = VisionTransformer(
        image_size=32, patch_size=16, num_layers=1, num_heads=2, hidden_dim=32, mlp_dim=64
    ).eval()
    backbone = token_backbone(vit)
    images = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        tokens, pooled = backbone(images)
        class_and_patches = vit.encoder(
            torch.cat([vit.class_token.expand(2, -1, -1), vit._process_input(images)], dim=1)
        )
    assert backbone.output_dim == 32
    assert tokens.shape == (2, 4, 32)
    torch.testing.assert_close(pooled, class_and_patches[:, 0])


def test_cnn_pooled_vector_is_mean_of_grid_tokens() -> None:
    torch.manual_seed(0)
    cnn = ImageEncoder("resnet18", image_size=64).eval()
    out = encode(cnn, [np.random.default_rng(0).random((8, 8))])
    torch.testing.assert_close(out.pooled, out.tokens.mean(dim=1))


@pytest.fixture
def png_file(tmp_path):
    pixels = np.random.default_rng(0).integers(0, 256, (12, 10, 3), dtype=np.uint8)
    path = tmp_path / "photo.png"
    Image.fromarray(pixels).save(path)
    return path, pixels


def test_image_preprocessor_accepts_path_pil_numpy_and_tensor(png_file) -> None:
    path, pixels = png_file
    preprocessor = ImagePreprocessor(image_size=32)
    items = [
        str(path),
        path,
        Image.fromarray(pixels),
        pixels,
        pixels.astype(np.float32) / 255.0,
        torch.from_numpy(pixels).permute(2, 0, 1),
    ]
    images = preprocessor(items)["images"]
    assert images.shape == (6, 3, 32, 32)
    for image in images[1:]:
        torch.testing.assert_close(image, images[0], atol=1e-5, rtol=0)


def test_image_preprocessor_makes_grey_and_rgba_images_rgb() -> None:
    grey = np.random.default_rng(0).random((8, 8))
    rgba = Image.new("RGBA", (9, 9), (10, 20, 30, 0))
    images = ImagePreprocessor(image_size=16)([grey, rgba, torch.rand(1, 8, 8)])["images"]
    assert images.shape == (3, 3, 16, 16)


def test_missing_image_file_error_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere.jpg"
    with pytest.raises(DataError, match="nowhere.jpg"):
        ImagePreprocessor()([missing])


def test_corrupt_image_file_error_names_the_path(tmp_path) -> None:
    corrupt = tmp_path / "broken.png"
    corrupt.write_text("not an image")
    with pytest.raises(DataError, match="broken.png"):
        ImagePreprocessor()([str(corrupt)])


def test_float_image_outside_unit_range_asks_for_scaling() -> None:
    digits = np.arange(64, dtype=np.float64).reshape(8, 8) / 4  # values 0..15.75
    with pytest.raises(DataError, match=r"scale them to \[0, 1\]"):
        ImagePreprocessor()([digits])


@pytest.mark.parametrize("suffix", [".safetensors", ".pth"])
def test_image_weights_load_from_state_dict_file(tmp_path, suffix) -> None:
    torch.manual_seed(1)
    source = torchvision.models.get_model("mobilenet_v3_small")
    path = tmp_path / f"weights{suffix}"
    state = {name: tensor.contiguous() for name, tensor in source.state_dict().items()}
    save_file(state, path) if suffix == ".safetensors" else torch.save(state, path)
    torch.manual_seed(2)
    encoder = ImageEncoder("mobilenet_v3_small", weights=str(path), image_size=32)
    loaded = encoder.backbone.trunk.state_dict()
    expected = source.features.state_dict()
    assert loaded.keys() == expected.keys()
    assert all(torch.equal(loaded[name], expected[name]) for name in expected)


def test_missing_weights_file_is_a_checkpoint_error(tmp_path) -> None:
    with pytest.raises(CheckpointError, match="absent.safetensors"):
        ImageEncoder("resnet18", weights=str(tmp_path / "absent.safetensors"))


def test_torchvision_weights_name_sets_their_preprocessing_without_download() -> None:
    encoder = ImageEncoder("resnet18", weights="DEFAULT", random_init=True)
    assert (encoder.preprocessor.resize_size, encoder.preprocessor.image_size) == (256, 224)


def test_unknown_backbone_and_weights_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="unknown image backbone 'resnet19'"):
        ImageEncoder("resnet19")
    with pytest.raises(ConfigError, match="unknown weights 'IMAGENET9K'"):
        ImageEncoder("resnet18", weights="IMAGENET9K")


def test_frozen_image_encoder_keeps_batch_norm_in_eval_mode() -> None:
    encoder = ImageEncoder("mobilenet_v3_small", freeze=True, image_size=32).train()
    assert not encoder.backbone.training
    assert trainable_names(encoder) == set()


# --- audio ---------------------------------------------------------------------------------


def test_spectrogram_features_and_output_shapes() -> None:
    torch.manual_seed(0)
    encoder = AudioEncoder(n_mels=32, d_model=32, num_layers=1, num_heads=2).eval()
    batch = encoder.preprocessor([torch.randn(16000), np.random.default_rng(0).normal(size=8000)])
    assert batch["features"].shape == (2, 101, 32)
    assert batch["feature_mask"].sum(dim=1).tolist() == [101, 51]
    out = encoder(**batch)
    assert out.tokens.shape == (2, 24, 32)
    assert out.mask.sum(dim=1).tolist() == [24, 12]
    assert out.pooled.shape == (2, 32) and encoder.output_dim == 32


def test_spectrogram_pooled_vector_does_not_depend_on_padding() -> None:
    torch.manual_seed(0)
    encoder = AudioEncoder(n_mels=32, d_model=32, num_layers=2, num_heads=2).eval()
    short = torch.randn(4000)
    alone = encode(encoder, [short]).pooled[0]
    batched = encode(encoder, [short, torch.randn(16000)]).pooled[0]
    torch.testing.assert_close(alone, batched, atol=1e-5, rtol=0)


def test_audio_file_is_downmixed_and_resampled(tmp_path) -> None:
    path = tmp_path / "clip.wav"
    stereo = np.random.default_rng(0).normal(scale=0.1, size=(4000, 2)).astype(np.float32)
    soundfile.write(path, stereo, 8000, subtype="FLOAT")
    preprocessor = AudioPreprocessor(sample_rate=16000, n_mels=32)
    batch = preprocessor([str(path), (stereo.T, 8000)])
    assert batch["feature_mask"].sum(dim=1).tolist() == [51, 51]  # 8000 samples at 16 kHz
    torch.testing.assert_close(batch["features"][0], batch["features"][1], atol=1e-4, rtol=0)


def test_missing_and_corrupt_audio_files_are_named(tmp_path) -> None:
    preprocessor = AudioPreprocessor()
    with pytest.raises(DataError, match="silence.wav"):
        preprocessor([tmp_path / "silence.wav"])
    corrupt = tmp_path / "noise.flac"
    corrupt.write_bytes(b"not audio at all")
    with pytest.raises(DataError, match="noise.flac"):
        preprocessor([str(corrupt)])


def test_wav2vec2_tiny_config_forward_and_padding() -> None:
    torch.manual_seed(0)
    encoder = AudioEncoder(kind="wav2vec2", model_config=TINY_WAV2VEC2).eval()
    batch = encoder.preprocessor([torch.randn(1600), torch.randn(3200)])
    assert batch["waveforms"].shape == (2, 3200)
    assert batch["lengths"].tolist() == [1600, 3200]
    out = encoder(**batch)
    assert out.tokens.shape == (2, 159, 32)
    assert out.mask.sum(dim=1).tolist() == [79, 159]
    alone = encode(encoder, [batch["waveforms"][0, :1600]]).pooled[0]
    torch.testing.assert_close(alone, out.pooled[0].detach(), atol=1e-5, rtol=0)


def test_audio_weights_round_trip_through_safetensors(tmp_path) -> None:
    torch.manual_seed(0)
    source = AudioEncoder(n_mels=16, d_model=16, num_layers=1, num_heads=2).eval()
    path = tmp_path / "audio.safetensors"
    save_file(source.model.state_dict(), path)
    loaded = AudioEncoder(n_mels=16, d_model=16, num_layers=1, num_heads=2, weights=str(path))
    items = [torch.randn(3000)]
    torch.testing.assert_close(encode(loaded.eval(), items).pooled, encode(source, items).pooled)


def test_wav2vec2_weights_load_from_a_torchaudio_state_dict(tmp_path) -> None:
    torch.manual_seed(0)
    source = torchaudio.models.wav2vec2_model(**TINY_WAV2VEC2).eval()
    path = tmp_path / "hubert.pth"
    torch.save(source.state_dict(), path)
    encoder = AudioEncoder(kind="hubert", model_config=TINY_WAV2VEC2, weights=str(path)).eval()
    waveform = torch.randn(1, 800)
    with torch.no_grad():
        expected, _ = source(waveform)
        tokens = encoder(waveforms=waveform, lengths=torch.tensor([800])).tokens
    torch.testing.assert_close(tokens, expected)


def test_unknown_audio_kind_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown audio kind 'mfcc'"):
        AudioEncoder(kind="mfcc")


# --- all preprocessors --------------------------------------------------------------------


def test_preprocessors_survive_pickling_for_data_loader_workers(tiny_text: TextEncoder) -> None:
    preprocessors = [tiny_text.preprocessor, ImagePreprocessor(16), AudioPreprocessor(n_mels=16)]
    items = [["fever"], [np.zeros((4, 4))], [torch.zeros(800)]]
    for preprocessor, batch in zip(preprocessors, items, strict=True):
        # the round trip DataLoader workers make (our own object, not a checkpoint)
        copy = ForkingPickler.loads(ForkingPickler.dumps(preprocessor))
        for name, tensor in preprocessor(batch).items():
            assert torch.equal(copy(batch)[name], tensor)
