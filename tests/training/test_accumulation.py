"""Any process count, any micro-batch: the update is the configured global batch's update."""

from __future__ import annotations

import csv
import socket
import sys
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.distributed import DistContext, EpochBatchSampler, plan_batches

sys.path.insert(0, str(Path(__file__).parent))  # spawned children import ddp_helper too
import ddp_helper  # noqa: E402


@pytest.mark.parametrize(("batch", "world", "micro"),
                         [(12, 4, None), (12, 8, None), (8, 3, None), (8, 6, None),
                          (12, 1, 3), (12, 3, 2), (8, 3, 2), (7, 2, 3)])
def test_plan_covers_the_batch_in_near_equal_weighted_chunks(batch: int, world: int,
                                                              micro: int | None) -> None:
    plan = plan_batches(batch, world, micro)
    sizes = plan.chunk_sizes()
    assert sum(sizes) == batch and max(sizes) - min(sizes) <= 1 and min(sizes) >= 1
    if micro is not None:
        assert max(sizes) <= micro
    spans = [span for r in range(world) for span in plan.rank_chunks(r)]
    assert [a for a, _ in spans] == [0, *[b for _, b in spans[:-1]]] and spans[-1][1] == batch
    # DDP averages W ranks and micro-steps add up: sum_r sum_j w / W == 1 (the batch mean)
    assert sum(w for r in range(world) for w in plan.weights(r)) == pytest.approx(world)
    assert str(batch) in plan.describe()


def test_plan_errors_name_the_fix() -> None:
    with pytest.raises(ValueError, match="smaller than the 3 processes"):
        plan_batches(2, 3)
    with pytest.raises(ValueError, match="micro_batch_size >= 2"):
        plan_batches(8, 3, 1)  # 3 procs x 3 steps of 1 > 8: some process would sit idle
    with pytest.raises(ValueError, match="micro_batch_size=0"):
        plan_batches(8, 2, 0)


def test_sampler_gives_each_rank_its_micro_batches_of_the_global_batch() -> None:
    full = EpochBatchSampler(24, 8, seed=5)
    ranks = [EpochBatchSampler(24, 8, seed=5, rank=r, world_size=3, micro_batch_size=2)
             for r in range(3)]
    for s in (full, *ranks):
        s.set_epoch(1, start_batch=1)
    k = ranks[0].plan.micro_steps
    assert k == 2 and len(ranks[0]) == 2 * len(full) == 4
    per_rank = [list(s) for s in ranks]
    for b, whole in enumerate(full):
        joined = [key for r in range(3) for mb in per_rank[r][b * k:(b + 1) * k] for key in mb]
        assert joined == whole


def _logged(folder: Path) -> list[float]:
    with (folder / "iterations.csv").open() as handle:
        return [float(row["loss"]) for row in csv.DictReader(handle)]


def _assert_same_training(a_dir: Path, b_dir: Path) -> None:
    a, b = load_checkpoint(a_dir / "last.pth"), load_checkpoint(b_dir / "last.pth")
    assert a["iteration"] == b["iteration"] == 3
    for key, value in a["state_dict"].items():
        torch.testing.assert_close(b["state_dict"][key], value, rtol=1e-10, atol=1e-12, msg=key)
    assert _logged(b_dir) == pytest.approx(_logged(a_dir), rel=1e-9)
    assert b["metrics"]["history"][0]["mae"] == pytest.approx(a["metrics"]["history"][0]["mae"],
                                                              rel=1e-9)


def test_accumulated_micro_steps_equal_the_single_batch_update(tmp_path: Path) -> None:
    """8 samples in one step == micro-batches 3 + 3 + 2 (weighted 3/8, 3/8, 2/8) accumulated."""
    ctx = DistContext(device=torch.device("cpu"))
    whole = ddp_helper.regression_trainer(ctx, tmp_path / "whole", 8, None)
    split = ddp_helper.regression_trainer(ctx, tmp_path / "split", 8, 3)
    assert (whole.plan.micro_steps, split.plan.micro_steps) == (1, 3)
    whole.fit()
    split.fit()
    _assert_same_training(tmp_path / "whole", tmp_path / "split")
    assert not torch.equal(load_checkpoint(tmp_path / "whole" / "last.pth")["state_dict"]["0.weight"],
                           ddp_helper.regression_trainer(ctx, tmp_path / "fresh", 8, None)
                           .plain_model.state_dict()["0.weight"])  # training moved the weights


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_three_gloo_processes_train_a_batch_of_eight(tmp_path: Path) -> None:
    """3 does not divide 8: chunks 2+1 per rank over 2 micro-steps (no_sync on the first);
    the weights and logged losses are those of one process with the whole batch."""
    one, three = tmp_path / "one", tmp_path / "three"
    ddp_helper.train_regression(0, 1, 0, str(one), 8, None)
    mp.spawn(ddp_helper.train_regression, args=(3, _free_port(), str(three), 8, 2), nprocs=3,
             join=True)
    _assert_same_training(one, three)
