"""bf16 copies of a model's parameters for the training forward pass; fp32 master weights stay.

Under bf16 autocast alone, each matmul casts its fp32 weight, and every op outside
autocast's list (layer norms, embeddings, GELU, dropout, residual adds) meets fp32 weights
and turns its activations back into fp32, to be cast again by the next matmul. Running the
model on bf16 copies of all its parameters keeps the activations bf16 from the embeddings
to the head, while AdamW still updates the fp32 parameters: mixed precision with fp32
master weights (Micikevicius et al. 2018). Hand-written because no library does this for a
CPU training step: apex's O2 and DeepSpeed's bf16 optimizer are CUDA engines, and
``model.to(torch.bfloat16)`` drops the fp32 weights (in ``benchmarks/train_speed.py`` it
cost BANKING77 0.78 points of test accuracy).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.func import functional_call

COMPUTE_DTYPE = torch.bfloat16


class Bf16Weights:
    """Calls ``module`` with bf16 copies of its floating-point parameters.

    A trainable parameter is cast inside the autograd graph, so its gradient arrives in
    the fp32 parameter's ``.grad`` (and in DDP's hooks) as usual; a frozen one is cast once
    and reused until it changes (its ``_version`` moves with every in-place write) or
    moves to another device. Buffers are left as they are (a norm's running statistics
    keep their in-place updates). Run the call under bf16 autocast, which casts what still
    meets fp32 (images, fp32 buffers) for the matmuls and keeps losses in fp32.
    """

    def __init__(self, module: nn.Module) -> None:
        self.module = module
        self._frozen: dict[str, tuple[tuple[int, int], torch.Tensor]] = {}

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return functional_call(self.module, self.parameters(), args, kwargs)

    def parameters(self) -> dict[str, torch.Tensor]:
        """``name -> bf16 tensor`` for every floating-point parameter of the module."""
        copies = {}
        for name, parameter in self.module.named_parameters():
            if not parameter.is_floating_point() or parameter.dtype == COMPUTE_DTYPE:
                continue
            if parameter.requires_grad:
                copies[name] = parameter.to(COMPUTE_DTYPE)
            else:
                copies[name] = self._frozen_copy(name, parameter)
        return copies

    def _frozen_copy(self, name: str, parameter: torch.Tensor) -> torch.Tensor:
        state = (parameter._version, parameter.data_ptr())  # written in place, or moved
        cached = self._frozen.get(name)
        if cached is not None and cached[0] == state:
            return cached[1]
        copy = parameter.detach().to(COMPUTE_DTYPE)
        self._frozen[name] = (state, copy)
        return copy
