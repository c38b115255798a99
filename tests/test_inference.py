"""Inference at a chosen precision: ``predict``'s bf16, int8 models, ``kgmm predict``."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import pytest
import torch
from training_run import build_model, datasets

from kgmm import ConfigError, FusedModel
from kgmm.cli.main import main
from kgmm.device import resolve_bf16
from kgmm.metrics import accuracy
from kgmm.model import AdapterConfig, int8_dynamic, is_int8_dynamic
from kgmm.training import Trainer, TrainingArguments


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, list[dict]]:
    """A tiny intent model trained until it is right on its dev samples, saved, and those
    dev samples."""
    folder = tmp_path_factory.mktemp("inference")
    train, dev = datasets(("intent",), train_size=48)
    model = build_model(dropout=0.0, tasks=("intent",))
    args = TrainingArguments(
        output_dir=str(folder / "run"), max_steps=80, batch_size=8, learning_rate=3e-3,
        device="cpu", progress_bar=False, seed=0,
    )  # fmt: skip
    Trainer(model, train, args=args).train()
    model.save_pretrained(folder / "model")
    return folder / "model", dev["intent"]


def logit_dtypes(model: FusedModel, samples: list[dict], **options) -> set[torch.dtype]:
    dtypes = set()
    hook = model.heads["intent"].register_forward_hook(
        lambda module, inputs, output: dtypes.add(output.logits.dtype)
    )
    model.predict(samples, "intent", **options)
    hook.remove()
    return dtypes


@pytest.mark.parametrize("native", [True, False])
def test_predict_runs_bf16_where_the_hardware_has_it(trained, monkeypatch, native):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: native)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    model = FusedModel.from_pretrained(trained[0])
    samples = trained[1][:4]
    assert logit_dtypes(model, samples) == {torch.bfloat16 if native else torch.float32}
    assert logit_dtypes(model, samples, bf16=False) == {torch.float32}
    if not native:
        with pytest.warns(UserWarning, match="no bf16 matmul hardware"):
            assert logit_dtypes(model, samples, bf16=True) == {torch.bfloat16}


def test_int8_model_predicts_like_fp32_and_runs_in_fp32(trained, monkeypatch):
    model = FusedModel.from_pretrained(trained[0])
    samples = trained[1]
    truth = [sample["label"] for sample in samples]
    fp32 = model.predict(samples, "intent", bf16=False)
    assert accuracy(truth, fp32) == 1.0  # the fixture trained the model to be right
    quantised = int8_dynamic(model)
    assert is_int8_dynamic(quantised) and not is_int8_dynamic(model)  # a copy
    assert quantised.predict(samples, "intent") == fp32
    # an int8 model's linears take fp32 activations: "auto" stays fp32 even on bf16 hardware
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert logit_dtypes(quantised, samples[:2]) == {torch.float32}
    with pytest.raises(ConfigError, match="int8 model runs with fp32 activations"):
        quantised.predict(samples, "intent", bf16=True)


def test_int8_asks_for_merged_adapters_and_is_not_saved(tmp_path):
    model = build_model(tasks=("intent",))
    with pytest.raises(ConfigError, match="int8 model is for inference only"):
        int8_dynamic(model).save_pretrained(tmp_path / "int8")
    model.add_adapter(AdapterConfig(method="lora", r=2, alpha=4))
    with pytest.raises(ConfigError, match=r"merge_adapter\(\) before quantising"):
        int8_dynamic(model)


def test_bf16_choice_must_be_true_false_or_auto():
    with pytest.raises(ConfigError, match="bf16 must be True, False or 'auto', got 'fp32'"):
        resolve_bf16("fp32", torch.device("cpu"))
    with pytest.raises(ConfigError, match="got 1"):
        resolve_bf16(1, torch.device("cpu"))


def write_manifest(path: Path, samples: list[dict]) -> Path:
    path.write_text("".join(json.dumps(sample) + "\n" for sample in samples))
    return path


@pytest.mark.parametrize("precision", ["auto", "int8"])
def test_kgmm_predict_writes_every_sample_with_its_prediction_in_order(
    trained, tmp_path, capsys, monkeypatch, precision
):
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    checkpoint, samples = trained
    unlabelled = [{"text": sample["text"], "id": index} for index, sample in enumerate(samples)]
    manifest = write_manifest(tmp_path / "in.jsonl", unlabelled)
    out = tmp_path / "sub" / "out.jsonl"
    command = ["predict", str(checkpoint), "--data", str(manifest), "--task", "intent"]
    assert main([*command, "--out", str(out), "--precision", precision]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == list(range(len(samples)))
    assert [row["prediction"] for row in rows] == [sample["label"] for sample in samples]
    used = {"auto": "auto: fp32", "int8": "int8"}[precision]  # no bf16 hardware (patched)
    err = capsys.readouterr().err
    assert f"{len(samples)} predictions in" in err and f"precision {used})" in err
    assert main([*command, "--batch-size", "5"]) == 0  # to standard output
    assert [json.loads(line) for line in capsys.readouterr().out.splitlines()] == rows


def test_kgmm_predict_names_bad_input_before_running_the_model(trained, tmp_path, capsys):
    checkpoint, samples = trained
    rows = [{"text": "x"}, {"text": samples[0]["text"], "prediction": "billing"}]
    manifest = tmp_path / "in.jsonl"
    manifest.write_text(json.dumps(rows[0]) + "\n\n" + json.dumps(rows[1]) + "\n")
    command = ["predict", str(checkpoint), "--data", str(manifest), "--task", "intent"]
    assert main(command) == 2
    assert "in.jsonl:3: the sample already has a 'prediction' field" in capsys.readouterr().err
    good = ["predict", str(checkpoint), "--task", "intent"]
    good += ["--data", str(write_manifest(tmp_path / "ok.jsonl", rows[:1]))]
    assert main([*good, "--out", str(tmp_path)]) == 2
    assert f"--out {tmp_path}: is a folder" in capsys.readouterr().err
    (tmp_path / "file").write_text("")
    assert main([*good, "--out", str(tmp_path / "file" / "out.jsonl")]) == 2
    assert "cannot create its folder" in capsys.readouterr().err
    assert main([*good, "--precision", "int8", "--device", "cuda"]) == 2
    assert "--precision int8 runs on the CPU only; use --device cpu" in capsys.readouterr().err
    number = write_manifest(tmp_path / "number.jsonl", [{"text": "x"}, {"text": 5}])
    assert main(["predict", str(checkpoint), "--data", str(number), "--task", "intent"]) == 2
    assert "sample 1: 'text' must be a string or a list of strings, got int" in (
        capsys.readouterr().err
    )
    for bad_flags in (["--batch-size", "0"], ["--precision", "fp16"]):
        with pytest.raises(SystemExit) as exit_info:
            main([*good, *bad_flags])
        assert exit_info.value.code == 2


def test_kgmm_evaluate_takes_a_precision(trained, tmp_path, capsys):
    checkpoint, samples = trained
    manifest = write_manifest(tmp_path / "dev.jsonl", samples)
    command = ["evaluate", str(checkpoint), "--data", str(manifest), "--task", "intent"]
    scores = {}
    for flags in (["--precision", "fp32"], ["--precision", "int8"], ["--bf16"]):
        with warnings.catch_warnings():  # --bf16 warns where bf16 is emulated
            warnings.simplefilter("ignore", UserWarning)
            assert main([*command, *flags]) == 0
        scores[flags[-1]] = json.loads(capsys.readouterr().out)["intent/accuracy"]
    assert scores == {"fp32": 1.0, "int8": 1.0, "--bf16": 1.0}
    with pytest.raises(SystemExit):  # --bf16 is --precision bf16: the two exclude each other
        main([*command, "--bf16", "--precision", "int8"])
