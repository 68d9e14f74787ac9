"""The poly learning-rate schedule against values computed by hand."""

from __future__ import annotations

import math

import pytest
import torch

from msanet_lib.training.schedule import PolySchedule, poly_lr


def test_poly_values_by_hand() -> None:
    # lr(t) = base * (1 - t/T)^0.9; (0.99)^0.9 = exp(0.9 * ln 0.99) = 0.990995...
    assert poly_lr(0.005, 1, 100) == pytest.approx(0.005 * 0.9909954834, rel=1e-9)
    assert poly_lr(0.005, 50, 100) == pytest.approx(0.005 * 0.5358867313, rel=1e-9)
    assert poly_lr(0.005, 100, 100) == 0.0
    assert poly_lr(0.01, 3, 4, power=1.0) == pytest.approx(0.0025)


def test_msanet_effective_start_is_ten_times_base_lr() -> None:
    """index_split=-1: every group gets 10x, so base_lr 0.005 starts at ~0.05 (spec §3)."""
    sched = PolySchedule(base_lr=0.005, max_iter=1000, power=0.9, index_split=-1, scale_lr=10.0)
    lrs = sched.group_lrs(1, num_groups=3)
    expected = 0.05 * (1 - 1 / 1000) ** 0.9
    assert lrs == pytest.approx([expected] * 3, rel=1e-12)
    assert expected == pytest.approx(0.0499550, rel=1e-5)


def test_index_split_zero_keeps_encoder_at_base_lr() -> None:
    """Stage 1 on PASCAL: groups [encoder, ppm, cls]; encoder x1, the others x10."""
    sched = PolySchedule(base_lr=2.5e-4, max_iter=10, power=0.9, index_split=0)
    lr = 2.5e-4 * 0.9**0.9
    assert sched.group_lrs(1, 3) == pytest.approx([lr, 10 * lr, 10 * lr], rel=1e-12)


def test_apply_sets_optimizer_groups_and_state_round_trips() -> None:
    params = [torch.nn.Parameter(torch.zeros(1)) for _ in range(2)]
    opt = torch.optim.SGD([{"params": [params[0]]}, {"params": [params[1]]}], lr=1.0)
    sched = PolySchedule(base_lr=0.1, max_iter=4, power=1.0, index_split=0, scale_lr=10.0)
    sched.apply(opt, 2)
    assert [g["lr"] for g in opt.param_groups] == pytest.approx([0.05, 0.5])
    other = PolySchedule(base_lr=1.0, max_iter=1)
    other.load_state_dict(sched.state_dict())
    assert other == sched
    with pytest.raises(ValueError, match="max_iter"):
        poly_lr(0.1, 1, 0)
    assert math.isclose(poly_lr(0.1, 10, 4), 0.0)  # clamped past the end, never negative
