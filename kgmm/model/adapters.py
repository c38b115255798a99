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
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import peft
import torch
from peft.tuners.adalora import AdaLoraModel
from peft.tuners.ia3 import IA3Model
from peft.tuners.lora import LoraModel
from safetensors.torch import load_file, save_file
from torch import nn

from kgmm.errors import CheckpointError, ConfigError

METHODS = ("lora", "adalora", "ia3", "prefix")
TARGETS = ("text", "fusion")
ADAPTER_NAME = "default"
ADAPTER_CONFIG_FILE = "adapter_config.json"
ADAPTER_WEIGHTS_FILE = "adapter_model.safetensors"

# peft's defaults for BERT-like encoders (query/value for LoRA; key/value/FFN output for IA3)
# and the fusion module's counterparts.
_DEFAULT_MODULES = {
    "lora": {"text": ("query", "value"), "fusion": ("q_proj", "k_proj", "v_proj", "out_proj")},
    "adalora": {"text": ("query", "value"), "fusion": ("q_proj", "k_proj", "v_proj", "out_proj")},
    "ia3": {"text": ("key", "value", "output.dense"), "fusion": ("k_proj", "v_proj", "fc2")},
}
_IA3_FEEDFORWARD = ("output.dense", "fc2")  # IA3 scales these layers' inputs, not outputs
_ROOTS = {"text": r"encoders\.text\.model\.", "fusion": r"fusion\."}
_TUNERS = {"lora": LoraModel, "adalora": AdaLoraModel, "ia3": IA3Model}


@dataclass
class AdapterConfig:
    """Which adapter to attach, where, and what else stays trainable.

    * ``method``: ``lora``, ``adalora``, ``ia3`` or ``prefix``.
    * ``r``, ``alpha``, ``dropout``: LoRA rank, scaling numerator and dropout; for AdaLoRA
      ``r`` is the average target rank after pruning from ``init_r``.
    * ``targets``: ``text`` and/or ``fusion`` (default both; prefix tuning: ``text`` only).
    * ``text_modules``, ``fusion_modules``: module-name suffixes to adapt (default: the
      method's usual ones, e.g. ``query``/``value`` and ``q_proj``..``out_proj`` for LoRA).
    * ``num_virtual_tokens``: prefix length.
    * ``budget_warmup``, ``budget_final``: AdaLoRA's rank budget stays full for this fraction
      of the training steps, then shrinks, and is frozen for the final fraction.
    * ``trainable``: glob patterns of parameter names that train besides the adapter
      (default the task heads, which are new); ``()`` trains the adapter alone.
    * ``extra``: further keyword arguments for the peft config (e.g. ``{"use_rslora": True}``).
    """

    method: str = "lora"
    r: int = 8
    alpha: int = 16
    dropout: float = 0.05
    targets: tuple[str, ...] | None = None
    text_modules: tuple[str, ...] | None = None
    fusion_modules: tuple[str, ...] | None = None
    num_virtual_tokens: int = 20
    init_r: int = 12
    budget_warmup: float = 0.1
    budget_final: float = 0.2
    trainable: tuple[str, ...] = ("heads.*",)
    extra: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ConfigError(f"adapter method must be one of {METHODS}, got {self.method!r}")
        if self.targets is None:
            self.targets = ("text",) if self.method == "prefix" else TARGETS
        self.targets = tuple(self.targets)
        unknown = sorted(set(self.targets) - set(TARGETS))
        if unknown or not self.targets:
            raise ConfigError(f"adapter targets must be a non-empty subset of {TARGETS}")
        if self.method == "prefix" and self.targets != ("text",):
            raise ConfigError("prefix tuning adapts the text encoder only: use targets=('text',)")
        for name in ("r", "num_virtual_tokens", "init_r"):
            if getattr(self, name) < 1:
                raise ConfigError(f"adapter {name} must be >= 1, got {getattr(self, name)}")
        if not 0 <= self.budget_warmup + self.budget_final < 1:
            raise ConfigError("adapter budget_warmup + budget_final must be in [0, 1)")
        self.trainable = tuple(self.trainable)
        for name in ("text_modules", "fusion_modules"):
            if getattr(self, name) is not None:
                setattr(self, name, tuple(getattr(self, name)))

    def modules(self, target: str) -> tuple[str, ...]:
        """Module-name suffixes adapted in ``target`` (``text`` or ``fusion``)."""
        chosen = self.text_modules if target == "text" else self.fusion_modules
        return chosen if chosen is not None else _DEFAULT_MODULES[self.method][target]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AdapterConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ConfigError(f"unknown adapter fields {unknown}; known: {sorted(known)}")
        return cls(**data)


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
