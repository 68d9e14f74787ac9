"""DistributedDataParallel: 2 gloo processes end with the weights of 1 process, same batches."""

from __future__ import annotations

import csv
import socket
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
import torch.multiprocessing as mp

from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.config import TrainConfig

sys.path.insert(0, str(Path(__file__).parent))  # spawned children import ddp_helper too
import ddp_helper  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_two_gloo_processes_match_one_process(tiny_config: Callable[..., TrainConfig],
                                              tmp_path: Path) -> None:
    cfg = tiny_config(meta={"epochs": 1, "val_episodes": 2, "batch_size": 4,
                            "samples_per_epoch": 8})  # 2 steps of a global batch of 4
    data = cfg.to_dict()
    one, two = tmp_path / "one", tmp_path / "two"
    mp.spawn(ddp_helper.train, args=(1, 0, data, str(one)), nprocs=1, join=True)
    mp.spawn(ddp_helper.train, args=(2, _free_port(), data, str(two)), nprocs=2, join=True)

    a = load_checkpoint(one / "last.pth")
    b = load_checkpoint(two / "last.pth")
    assert a["iteration"] == b["iteration"] == 2
    moved = 0
    ddp_helper.assert_same_weights(a, b, atol=1e-6)
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        torch.testing.assert_close(sb["momentum_buffer"], sa["momentum_buffer"],
                                   rtol=1e-4, atol=1e-6)
        moved += int(sa["momentum_buffer"].abs().sum() > 0)
    assert moved > 5  # gradients really flowed into the trainable modules
    assert a["metrics"]["history"][0]["loss"] == pytest.approx(b["metrics"]["history"][0]["loss"],
                                                                rel=1e-5)
    # iterations.csv logs the all-rank mean too (it used to hold rank 0's half of the batch)
    def logged(folder: Path) -> list[float]:
        with (folder / "iterations.csv").open() as handle:
            return [float(row["loss"]) for row in csv.DictReader(handle)]

    assert logged(two) == pytest.approx(logged(one), rel=1e-5) and len(logged(one)) == 2


def test_process_group_timeout_comes_from_the_config(monkeypatch) -> None:
    """init_distributed passes runtime.dist_timeout_minutes to init_process_group."""
    import datetime

    import torch.distributed as dist

    from msanet_lib.training import distributed
    from msanet_lib.training.config import load_config

    seen = {}
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda **kw: seen.update(kw))
    cfg = load_config("toy", {"runtime": {"dist_timeout_minutes": 45}})
    ctx = distributed.init_distributed("cpu", cfg.runtime.dist_timeout_minutes)
    assert ctx.rank == 1 and ctx.world_size == 2
    assert seen["backend"] == "gloo"
    assert seen["timeout"] == datetime.timedelta(minutes=45)


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_sharded_validation_gives_the_numbers_of_one_process(
        tiny_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    """Every rank scores its share of the validation set; the summed counts make every rank
    report exactly the one-process numbers (odd sizes: the shares are unequal)."""
    import json

    cfg = tiny_config(pretrain={"val_images": 70},           # 3 batches of 32: 2 + 1
                      base={"max_val_images": 10, "val_batch_size": 4},  # 4 + 4 + 2
                      meta={"val_episodes": 5})               # 5 episodes, batch 1: 3 + 2
    data = cfg.to_dict()
    one, two = tmp_path / "one", tmp_path / "two"
    one.mkdir()
    two.mkdir()
    mp.spawn(ddp_helper.validate, args=(1, 0, data, str(one)), nprocs=1, join=True)
    mp.spawn(ddp_helper.validate, args=(2, _free_port(), data, str(two)), nprocs=2, join=True)
    for stage in ("pretrain", "base", "meta"):
        single = json.loads((one / f"{stage}_0.json").read_text())
        assert 0 < single["score"] < 1, (stage, single)  # a real score, not an empty meter
        for rank in (0, 1):
            assert json.loads((two / f"{stage}_{rank}.json").read_text()) == single, (stage, rank)


def test_rank_batches_deal_whole_batches_round_robin() -> None:
    from msanet_lib.evaluation.protocol import rank_batches

    whole = rank_batches(range(11), 3)
    assert whole == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [9, 10]]
    shares = [rank_batches(range(11), 3, r, 3) for r in range(3)]
    assert shares == [[whole[0], whole[3]], [whole[1]], [whole[2]]]
    assert rank_batches(range(2), 3, 1, 2) == []  # a rank may get nothing; it still reduces
    with pytest.raises(ValueError, match="rank=2"):
        rank_batches(range(4), 2, 2, 2)
