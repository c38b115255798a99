"""Parameter-efficient fine-tuning through ``peft``: LoRA, AdaLoRA, IA3 and prefix tuning.

LoRA, AdaLoRA and IA3 are injected by one peft tuner (``LoraModel``, ``AdaLoraModel``,
``IA3Model``) into the :class:`FusedModel` in place, at the text encoder's attention
projections and/or the fusion module's ``q_proj/k_proj/v_proj/out_proj``; prefix tuning wraps
the Hugging Face text model in a ``PeftModel`` (it needs peft's forward, which feeds the
learned prefix as past keys and values). Adapter weights save to a small safetensors folder.
"""

from __future__ import annotations

import fnmatch
import json
import re
from pathlib import Path

import peft
import torch
from peft.tuners.adalora import AdaLoraModel
from peft.tuners.ia3 import IA3Model
from peft.tuners.lora import LoraModel
from safetensors.torch import load_file, save_file
from torch import nn

from kgmm.errors import CheckpointError, ConfigError
from kgmm.model.adapter_config import (
    ADAPTER_CONFIG_FILE,
    ADAPTER_NAME,
    ADAPTER_WEIGHTS_FILE,
    AdapterConfig,
)

_IA3_FEEDFORWARD = ("output.dense", "fc2")  # IA3 scales these layers' inputs, not outputs
_ROOTS = {"text": r"encoders\.text\.model\.", "fusion": r"fusion\."}
_TUNERS = {"lora": LoraModel, "adalora": AdaLoraModel, "ia3": IA3Model}


class Adapter:
    """An adapter attached to a model: its config and the peft object that holds it.

    Not an ``nn.Module``: the adapter weights are registered inside the model already.
    """

    def __init__(self, model: nn.Module, config: AdapterConfig) -> None:
        self.config = config
        self._model = model
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        if config.method == "prefix":
            self.peft_module = _wrap_text_encoder(model, config)
        else:
            self.peft_module = _TUNERS[config.method](
                model, _tuner_config(model, config), ADAPTER_NAME
            )
        self.adapter_parameters = [p for p in model.parameters() if p.requires_grad]
        for name, parameter in model.named_parameters():
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in config.trainable):
                parameter.requires_grad_(True)

    @property
    def is_adalora(self) -> bool:
        return self.config.method == "adalora"

    # ------------------------------------------------------------------ saving
    def save(self, directory: str | Path) -> None:
        """Write ``adapter_config.json`` and ``adapter_model.safetensors`` (adapter weights
        plus the parameters ``trainable`` named) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        weights = {
            f"adapter.{k}": v
            for k, v in peft.get_peft_model_state_dict(
                self._peft_root, adapter_name=ADAPTER_NAME
            ).items()
        }
        weights.update({f"model.{k}": v for k, v in self._extra_state().items()})
        weights = {k: v.detach().contiguous() for k, v in weights.items()}
        save_file(weights, str(directory / ADAPTER_WEIGHTS_FILE), metadata={"format": "pt"})
        (directory / ADAPTER_CONFIG_FILE).write_text(
            json.dumps(self.config.to_dict(), indent=2) + "\n"
        )

    def load_weights(self, path: Path) -> None:
        """Load an ``adapter_model.safetensors`` written by :meth:`save`."""
        weights = load_file(str(path))
        adapter = {k[8:]: v for k, v in weights.items() if k.startswith("adapter.")}
        extra = {k[6:]: v for k, v in weights.items() if k.startswith("model.")}
        result = peft.set_peft_model_state_dict(self._peft_root, adapter, adapter_name=ADAPTER_NAME)
        expected = set(self._extra_state())
        unknown = sorted(set(extra) - expected)
        if result.unexpected_keys or unknown or len(adapter) + len(extra) != len(weights):
            raise CheckpointError(
                f"{path} does not fit this model's adapter: unexpected "
                f"{(list(result.unexpected_keys) + unknown)[:5]}"
            )
        self._model.load_state_dict(extra, strict=False)

    @property
    def _peft_root(self) -> nn.Module:
        """The module peft's state-dict helpers read: the injected FusedModel, or the
        ``PeftModel`` around the text encoder (prefix tuning)."""
        return self.peft_module if self.config.method == "prefix" else self._model

    def _extra_state(self) -> dict[str, torch.Tensor]:
        adapter = {id(p) for p in self.adapter_parameters}
        return {
            name: parameter
            for name, parameter in self._model.named_parameters()
            if parameter.requires_grad and id(parameter) not in adapter
        }

    # ------------------------------------------------------------------ merging
    def merge(self) -> None:
        """Fold the adapter into the base weights (LoRA, AdaLoRA, IA3) and remove it."""
        if self.config.method == "prefix":
            raise ConfigError("prefix tuning adds virtual tokens, not weights: it cannot merge")
        self.peft_module.merge_and_unload()  # also removes the model's ``peft_config``

    # ------------------------------------------------------------------ AdaLoRA
    def allocate(self, step: int, total_steps: int) -> None:
        """AdaLoRA's rank budget step, after optimizer step ``step`` (1-based) of
        ``total_steps``: update importance scores and mask the least important ranks."""
        peft_config = self.peft_module.peft_config[ADAPTER_NAME]
        if peft_config.total_step != total_steps:
            peft_config.total_step = total_steps
            peft_config.tinit = int(self.config.budget_warmup * total_steps)
            peft_config.tfinal = int(self.config.budget_final * total_steps)
        for parameter in self.adapter_parameters:
            if parameter.grad is None:  # a branch this step skipped (no entities): no signal
                parameter.grad = torch.zeros_like(parameter)
        self.peft_module.update_and_allocate(step)

    def orthogonal_loss(self) -> torch.Tensor | None:
        """AdaLoRA's orthogonality penalty on P and Q, times ``orth_reg_weight``.

        Written out because peft adds it only inside ``AdaLoraModel.forward`` when the
        wrapped model's output has a ``loss``, and here the FusedModel is called directly.
        """
        weight = self.peft_module.peft_config[ADAPTER_NAME].orth_reg_weight
        terms = []
        for name, parameter in self._model.named_parameters():
            if name.endswith((f"lora_A.{ADAPTER_NAME}", f"lora_B.{ADAPTER_NAME}")):
                is_a = "lora_A" in name
                covariance = parameter @ parameter.T if is_a else parameter.T @ parameter
                identity = torch.eye(*covariance.shape, device=covariance.device)
                terms.append(torch.linalg.matrix_norm(covariance - identity))
        return weight * torch.stack(terms).mean() if terms and weight > 0 else None


def _module_regex(config: AdapterConfig, only: tuple[str, ...] | None = None) -> str:
    """A regex peft full-matches against module names: the chosen suffixes under each target
    (restricted to ``only`` when given)."""
    parts = []
    for target in config.targets:
        chosen = [s for s in config.modules(target) if only is None or s in only]
        suffixes = [re.escape(s) for s in chosen]
        if suffixes:
            parts.append(f"{_ROOTS[target]}(.*\\.)?({'|'.join(suffixes)})")
    return "|".join(f"({part})" for part in parts)


def _tuner_config(model: nn.Module, config: AdapterConfig) -> peft.PeftConfig:
    _check_text(model, config)
    targets = _module_regex(config)
    if config.method == "lora":
        return peft.LoraConfig(
            r=config.r,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=targets,
            **config.extra,
        )
    if config.method == "adalora":
        return peft.AdaLoraConfig(
            init_r=config.init_r,
            target_r=config.r,
            lora_alpha=config.alpha,
            lora_dropout=config.dropout,
            target_modules=targets,
            total_step=1,  # set from the Trainer's step count when training starts
            **config.extra,
        )
    feedforward = _module_regex(config, _IA3_FEEDFORWARD)
    return peft.IA3Config(
        target_modules=targets, feedforward_modules=feedforward or [], **config.extra
    )


def _wrap_text_encoder(model: nn.Module, config: AdapterConfig) -> peft.PeftModel:
    _check_text(model, config)
    encoder = model.encoders["text"]
    prefix = peft.PrefixTuningConfig(
        task_type="FEATURE_EXTRACTION", num_virtual_tokens=config.num_virtual_tokens, **config.extra
    )
    encoder.model = peft.get_peft_model(encoder.model, prefix)
    return encoder.model


def _check_text(model: nn.Module, config: AdapterConfig) -> None:
    if "text" in config.targets and "text" not in model.encoders:
        raise ConfigError("adapter targets include 'text' but the model has no text encoder")
