"""Data order and per-sample seeding: a function of (seed, epoch, index) only."""

from __future__ import annotations

import random

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from msanet_lib.training.distributed import EpochBatchSampler, SeededDataset


class RandomItems(Dataset):
    """Each item draws from all three global generators, like an augmentation pipeline."""

    def __len__(self) -> int:
        return 10

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.tensor([index, random.random(), np.random.rand(), torch.rand(()).item()])  # noqa: NPY002


def _keys(sampler: EpochBatchSampler) -> list[list[tuple[int, int]]]:
    return [list(b) for b in sampler]


def test_order_depends_only_on_seed_and_epoch() -> None:
    a, b = EpochBatchSampler(10, 4, seed=1), EpochBatchSampler(10, 4, seed=1)
    torch.manual_seed(123)  # the global stream must not matter
    a.set_epoch(3)
    b.set_epoch(3)
    assert _keys(a) == _keys(b)
    assert len(_keys(a)) == 2  # drop_last: 10 // 4
    b.set_epoch(4)
    assert _keys(a) != _keys(b)


def test_ranks_split_each_global_batch_contiguously() -> None:
    full = EpochBatchSampler(12, 4, seed=5)
    ranks = [EpochBatchSampler(12, 4, seed=5, rank=r, world_size=2) for r in range(2)]
    for s in (full, *ranks):
        s.set_epoch(2)
    for whole, r0, r1 in zip(_keys(full), _keys(ranks[0]), _keys(ranks[1])):
        assert whole == r0 + r1


def test_resume_mid_epoch_skips_exactly_the_done_batches() -> None:
    s = EpochBatchSampler(12, 3, seed=0)
    s.set_epoch(1)
    all_batches = _keys(s)
    s.set_epoch(1, start_batch=2)
    assert _keys(s) == all_batches[2:] and len(s) == 2


def test_batch_size_errors_are_clear() -> None:
    uneven = [EpochBatchSampler(12, 3, seed=0, rank=r, world_size=2) for r in range(2)]
    assert [len(next(iter(s))) for s in uneven] == [2, 1]  # 2 does not divide 3: shares 2 + 1
    with pytest.raises(ValueError, match="smaller than the 4 processes"):
        EpochBatchSampler(12, 3, seed=0, world_size=4)
    with pytest.raises(ValueError, match="fewer than one batch"):
        EpochBatchSampler(2, 3, seed=0)


def test_seeded_items_are_reproducible_and_leave_global_streams_alone() -> None:
    data = SeededDataset(RandomItems(), seed=7)
    torch.manual_seed(0)
    random.seed(0)
    first = data[(1, 4)]
    after = (random.random(), torch.rand(()).item())
    torch.manual_seed(0)
    random.seed(0)
    data[(1, 5)]
    assert (random.random(), torch.rand(()).item()) == after  # loading did not consume them
    torch.manual_seed(99)
    assert torch.equal(data[(1, 4)], first)
    assert not torch.equal(data[(2, 4)], first)  # another epoch re-augments


def test_workers_do_not_change_the_batches() -> None:
    sampler = EpochBatchSampler(10, 2, seed=3)
    sampler.set_epoch(0)
    data = SeededDataset(RandomItems(), seed=3)
    plain = [b for b in DataLoader(data, batch_sampler=sampler, num_workers=0)]
    forked = [b for b in DataLoader(data, batch_sampler=sampler, num_workers=2)]
    assert all(torch.equal(x, y) for x, y in zip(plain, forked))

