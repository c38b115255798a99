"""``AdapterConfig``: which peft adapter a :class:`FusedModel` gets, where, and what else
trains. Kept apart from :mod:`kgmm.model.adapters` so that reading a config (and importing
:mod:`kgmm.model`) does not import peft, which takes seconds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kgmm.errors import ConfigError
from kgmm.model.config import build_config

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
        return build_config(cls, data, "adapter")
