"""Dropout whose masks cost a quarter of a random draw per element (for CPU training).

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister, one
element after the other, so a second thread does not help. In the BANKING77 benchmark,
``aten::bernoulli_`` took 12% of a MiniLM training step's op time at one thread and 17% at
two (benchmarks/README.md, session 10, "Why"). :class:`LaneDropout` cuts each 64-bit draw of
the same generator into four 16-bit lanes, one per element. No library offers this, so it is
written here.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

LANES = 1 << 16  # values a 16-bit lane takes
LANES_PER_WORD = 4  # 16-bit lanes in one int64 draw


class LaneDropout(nn.Dropout):
    """``nn.Dropout`` with masks from 16-bit random lanes.

    Each lane is uniform on ``2**16`` values; an element is dropped when its lane falls among
    the lowest ``round(p * 2**16)`` of them, so ``p`` is rounded to a multiple of 2**-16
    (0.1 becomes 0.100006; a ``p`` that rounds to 1 uses torch's dropout). Kept elements are
    scaled by the inverse of the rounded keep rate, so the expectation is exact in fp32 (in
    bf16 the scale itself rounds, as it does in torch's dropout). Draws come from torch's
    generator for the tensor's device, so ``torch.manual_seed`` repeats them. Evaluation mode
    is the identity, as for ``nn.Dropout``.
    """

    def forward(self, input: Tensor) -> Tensor:
        dropped = round(self.p * LANES)
        if not self.training or dropped == 0:
            return input
        if dropped >= LANES:
            return super().forward(input)
        count = input.numel()
        words = torch.empty(-(-count // LANES_PER_WORD), dtype=torch.int64, device=input.device)
        lanes = words.random_(-(1 << 63), None).view(torch.int16)[:count].view(input.shape)
        # An int16 lane is uniform on [-2**15, 2**15): the lowest ``dropped`` values drop.
        keep = (lanes >= dropped - LANES // 2).to(input.dtype).mul_(LANES / (LANES - dropped))
        return input.mul_(keep) if self.inplace else input * keep


def use_lane_dropout(module: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` inside ``module`` by a :class:`LaneDropout` with the
    same ``p`` and ``inplace``, in place (one instance registered in several places stays one
    instance); return how many instances were replaced. Attention dropout that runs inside
    ``scaled_dot_product_attention`` keeps torch's masks."""
    replacements: dict[nn.Dropout, LaneDropout] = {}
    for parent in list(module.modules()):
        # ``_modules``, not ``named_children()``, which lists a repeated child only once.
        for name, child in list(parent._modules.items()):
            if type(child) is nn.Dropout:
                if child not in replacements:
                    replacements[child] = LaneDropout(child.p, child.inplace)
                setattr(parent, name, replacements[child])
    return len(replacements)
