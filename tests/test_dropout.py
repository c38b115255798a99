"""LaneDropout: torch's dropout semantics with masks cut from 16-bit random lanes."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from kgmm.training import LaneDropout, use_lane_dropout


def test_lane_dropout_keeps_one_minus_p_and_the_expectation():
    torch.manual_seed(0)
    dropout = LaneDropout(0.1).train()
    x = torch.ones(1_000_003)  # not a multiple of four lanes
    out = dropout(x)
    kept = out != 0
    scale = 65536 / (65536 - round(0.1 * 65536))
    assert torch.all(out[kept] == scale)
    # 1e6 draws: the kept fraction's standard deviation is 3e-4; 5 of them is 1.5e-3.
    assert abs(kept.float().mean().item() - 0.9) < 1.5e-3
    assert abs(out.mean().item() - 1.0) < 2e-3


def test_lane_dropout_lanes_are_unbiased_in_every_position_of_a_draw():
    """Each 64-bit draw feeds four neighbouring elements; all four drop at the rate p."""
    torch.manual_seed(0)
    kept = LaneDropout(0.5).train()(torch.ones(400_000)) != 0
    for lane in range(4):
        assert abs(kept[lane::4].float().mean().item() - 0.5) < 5e-3


def test_lane_dropout_gradient_is_the_mask_and_the_seed_repeats_it():
    x = torch.randn(8, 16, requires_grad=True)
    dropout = LaneDropout(0.3).train()
    torch.manual_seed(1)
    out = dropout(x)
    out.sum().backward()
    torch.testing.assert_close(x.grad * x, out)  # d out / d x is the scaled mask
    torch.manual_seed(1)
    torch.testing.assert_close(dropout(x), out)


def test_lane_dropout_in_place_eval_and_edge_probabilities():
    x = torch.randn(4, 5)
    assert LaneDropout(0.5).eval()(x) is x
    assert LaneDropout(0.0).train()(x) is x
    assert torch.equal(LaneDropout(1.0).train()(x), torch.zeros_like(x))
    y = x.clone()
    torch.manual_seed(2)
    out = LaneDropout(0.5, inplace=True).train()(y)
    assert out.data_ptr() == y.data_ptr() and (out == 0).any()
    torch.manual_seed(3)
    bf16 = LaneDropout(0.2).train()(x.bfloat16())
    scale = torch.tensor(65536 / (65536 - round(0.2 * 65536)), dtype=torch.bfloat16)
    kept = bf16 != 0
    assert bf16.dtype == torch.bfloat16 and kept.any() and not kept.all()
    assert torch.equal(bf16[kept], x.bfloat16()[kept] * scale)


def test_lane_dropout_with_p_that_rounds_to_one_is_torchs_dropout():
    torch.manual_seed(4)
    near_one = LaneDropout(1 - 2**-18).train()(torch.ones(1000))
    torch.manual_seed(4)
    assert torch.equal(near_one, nn.functional.dropout(torch.ones(1000), 1 - 2**-18))


@pytest.mark.parametrize("p", [0.1, 0.25])
def test_use_lane_dropout_replaces_every_plain_dropout_keeping_p(p):
    model = nn.Sequential(nn.Linear(4, 4), nn.Dropout(p), nn.Sequential(nn.Dropout(p, True)))
    assert use_lane_dropout(model) == 2
    assert [type(m) for m in model.modules()].count(LaneDropout) == 2
    assert model[1].p == p and model[2][0].inplace
    assert use_lane_dropout(model) == 0  # already swapped


def test_use_lane_dropout_keeps_a_shared_dropout_shared():
    shared = nn.Dropout(0.2)
    model = nn.Sequential(shared, nn.Linear(4, 4), shared, nn.Sequential(shared))
    assert use_lane_dropout(model) == 1
    assert isinstance(model[0], LaneDropout)
    assert model[0] is model[2] is model[3][0]
