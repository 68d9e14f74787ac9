"""Worker of the DDP test (a plain module so spawned processes can import it)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from msanet_lib.runtime import seed_all
from msanet_lib.training.config import config_from_dict
from msanet_lib.training.distributed import cleanup_distributed, init_distributed
from msanet_lib.training.engine import Recipe, StageSpec, StepOutput, Trainer
from msanet_lib.training.stage2 import build_meta_stage


class NoIgnore(Dataset):
    """Episodes with ignore pixels (255) relabelled background.

    With a mean loss over *valid* pixels, N processes average N per-process means while one
    process takes the mean over all pixels; the two agree only when every sample has the same
    number of valid pixels. Relabelling makes that true, so the weights can be compared.
    """

    def __init__(self, data: Any) -> None:
        self.data = data

    def set_epoch(self, epoch: int) -> None:
        self.data.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, index: int) -> dict:
        item = dict(self.data[index])
        for key in ("query_mask", "support_masks", "query_base_label"):
            item[key] = item[key].masked_fill(item[key] == 255, 0)
        return item


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    """Two checkpoints of the same run on different process counts: every float tensor close
    (rtol 1e-4, ``atol``), every integer tensor (BatchNorm counters) equal."""
    for key, va in a["state_dict"].items():
        vb = b["state_dict"][key]
        if va.is_floating_point():
            torch.testing.assert_close(vb, va, rtol=1e-4, atol=atol, msg=f"{key} differs")
        else:
            assert torch.equal(va, vb), key


def train(rank: int, world_size: int, port: int, cfg_dict: dict, out: str,
          device: str = "cpu") -> None:
    """Meta-train the tiny config on ``world_size`` processes (gloo on the CPU, NCCL with
    ``device="cuda"``, one GPU per rank); rank 0 writes last.pth."""
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
        torch.set_num_threads(1)
    ctx = init_distributed(device)
    try:
        cfg = config_from_dict(cfg_dict)
        seed_all(cfg.seed)
        spec, recipe = build_meta_stage(cfg, ctx.device, base_learner=None)
        for module in spec.model.modules():  # dropout masks differ per process by design
            if isinstance(module, nn.modules.dropout._DropoutNd):
                module.p = 0.0
        spec.train_set = NoIgnore(spec.train_set)
        Trainer(spec, recipe, ctx, Path(out), cfg.to_dict(), cfg.seed, progress=False,
                log_every=1).fit()
    finally:
        cleanup_distributed()


def validate(rank: int, world_size: int, port: int, cfg_dict: dict, out: str) -> None:
    """Validate the same random stage-0, stage-1 and stage-2 models on ``world_size`` gloo
    processes; every rank writes its numbers to ``out/<stage>_<rank>.json``."""
    import json

    from msanet_lib.training.stage0 import build_pretrain_stage
    from msanet_lib.training.stage1 import build_base_stage

    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
        torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        cfg = config_from_dict(cfg_dict)
        builders = {"pretrain": lambda: build_pretrain_stage(cfg, ctx.device),
                    "base": lambda: build_base_stage(cfg, ctx.device, init="scratch"),
                    "meta": lambda: build_meta_stage(cfg, ctx.device, base_learner=None)}
        for stage, build in builders.items():
            seed_all(cfg.seed)  # the same random weights in every process
            spec, _ = build()
            result = spec.validate(spec.model, ctx)
            Path(out, f"{stage}_{rank}.json").write_text(json.dumps(result))
    finally:
        cleanup_distributed()


class Regression(Dataset):
    """32 fixed float64 samples ``x (4,) -> y (2,)``: a per-sample mean loss, no BatchNorm,
    no dropout, so a batch's update does not depend on how it is shared out."""

    def __len__(self) -> int:
        return 32

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(index)
        x = torch.randn(4, generator=g, dtype=torch.float64)
        return {"x": x, "y": torch.stack([x.sum().sin(), x[0] * x[1]])}


def regression_trainer(ctx: Any, out: Path, batch_size: int,
                       micro_batch_size: int | None) -> Trainer:
    """A two-layer MLP trained 3 steps of ``batch_size`` (the same initial weights each call)."""
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 2)).double()

    def step(net: nn.Module, batch: dict) -> StepOutput:
        error = net(batch["x"]) - batch["y"]  # (B, 2)
        return StepOutput((error ** 2).mean(), {"mae": error.abs().mean()})

    spec = StageSpec(name="meta", model=model,
                     param_groups=[{"params": list(model.parameters()), "name": "mlp"}],
                     train_set=Regression(), step=step,
                     validate=lambda net, ctx: {"score": 0.0},
                     train_mode=lambda net: net.train(), model_config={})
    recipe = Recipe(epochs=1, batch_size=batch_size, base_lr=0.05, index_split=0, scale_lr=1.0,
                    power=0.9, momentum=0.9, weight_decay=1e-4, stop_interval=5,
                    samples_per_epoch=3 * batch_size)
    return Trainer(spec, recipe, ctx, out, config={}, seed=0, progress=False, log_every=1,
                   micro_batch_size=micro_batch_size)


def train_regression(rank: int, world_size: int, port: int, out: str, batch_size: int,
                     micro_batch_size: int | None) -> None:
    """:func:`regression_trainer` on ``world_size`` gloo processes; rank 0 writes last.pth."""
    if world_size > 1:
        os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank),
                          WORLD_SIZE=str(world_size), LOCAL_RANK=str(rank))
        torch.set_num_threads(1)
    ctx = init_distributed("cpu")
    try:
        regression_trainer(ctx, Path(out), batch_size, micro_batch_size).fit()
    finally:
        cleanup_distributed()
