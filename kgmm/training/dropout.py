"""Dropout whose masks cost a quarter of a random draw per element (for CPU training).

torch's CPU dropout draws one Bernoulli sample per element from its Mersenne Twister, one
element after the other: about 5 ns per element on this project's CPU at any thread count.
That made ``aten::bernoulli_`` 11% of a MiniLM training step at one thread and 16% at two
(benchmarks/README.md, "Where the time goes"). :class:`LaneDropout` cuts each 64-bit draw of
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

    An element is kept when its lane is at or above ``round(p * 2**16)`` (as unsigned), so
    ``p`` is rounded to a multiple of 2**-16 (0.1 becomes 0.100006), and kept elements are
    scaled by the inverse of the rounded keep probability: the expectation stays exact. Draws
    come from torch's generator for the tensor's device, so ``torch.manual_seed`` repeats them.
    Evaluation mode is the identity, as for ``nn.Dropout``.
    """

    def forward(self, x: Tensor) -> Tensor:
        dropped = round(self.p * LANES)
        if not self.training or dropped == 0:
            return x
        if dropped >= LANES:
            return super().forward(x)
        count = x.numel()
        words = torch.empty(-(-count // LANES_PER_WORD), dtype=torch.int64, device=x.device)
        lanes = words.random_(-(1 << 63), None).view(torch.int16)[:count].view(x.shape)
        # int16 lanes run from -2**15: "unsigned lane >= dropped" is "lane >= dropped - 2**15".
        keep = (lanes >= dropped - LANES // 2).to(x.dtype).mul_(LANES / (LANES - dropped))
        return x.mul_(keep) if self.inplace else x * keep


def use_lane_dropout(module: nn.Module) -> int:
    """Replace every plain ``nn.Dropout`` inside ``module`` by a :class:`LaneDropout` with the
    same ``p`` and ``inplace``, in place; return how many were replaced. Attention dropout
    that runs inside ``scaled_dot_product_attention`` keeps torch's masks."""
    replaced = 0
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if type(child) is nn.Dropout:
                setattr(parent, name, LaneDropout(child.p, child.inplace))
                replaced += 1
    return replaced
