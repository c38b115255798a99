"""Dynamic int8 quantisation of a model's linear layers, for CPU inference."""

from __future__ import annotations

import warnings

import torch
from torch import nn

from kgmm.device import resolve_bf16
from kgmm.errors import ConfigError

__all__ = ["int8_dynamic", "is_int8_dynamic", "resolve_model_bf16"]


def int8_dynamic(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with every ``nn.Linear`` holding int8 weights, its activations
    quantised per call (``torch.ao.quantization.quantize_dynamic``). CPU only.

    Measured on BANKING77 text+KG (``benchmarks/inference.py``): 1.63x fp32's batch-64
    throughput on an AMX Xeon, 1.03x on an AVX2 CPU without int8 dot-product instructions.
    ``torch.ao.quantization`` is deprecated in favour of torchao but ships with torch 2.14;
    torchao is not a dependency."""
    devices = {parameter.device.type for parameter in model.parameters()}
    if devices - {"cpu"}:
        raise ConfigError(
            f"int8 dynamic quantisation runs on the CPU only; the model is on {sorted(devices)}"
        )
    if getattr(model, "adapter", None) is not None:
        raise ConfigError("merge_adapter() before quantising: peft layers do not quantise")
    from torch.ao.quantization import quantize_dynamic

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        return quantize_dynamic(model, {nn.Linear}, dtype=torch.qint8)


def is_int8_dynamic(model: nn.Module) -> bool:
    """Whether ``model`` holds linear layers quantised by :func:`int8_dynamic`."""
    from torch.ao.nn.quantized.dynamic import Linear as DynamicLinear

    return any(isinstance(module, DynamicLinear) for module in model.modules())


def resolve_model_bf16(model: nn.Module, choice: bool | str, device: torch.device) -> bool:
    """:func:`kgmm.device.resolve_bf16` for running ``model``: an int8 model's quantised
    linears take fp32 activations only, so for it ``"auto"`` is fp32 and ``True`` an error."""
    if not is_int8_dynamic(model):
        return resolve_bf16(choice, device, stacklevel=4)  # the warning names the caller
    if choice is True:
        raise ConfigError("an int8 model runs with fp32 activations: use bf16=False or 'auto'")
    return False
