"""Kill-and-resume: an interrupted and resumed run ends with exactly the weights of a straight one.

The interruption is real: a SIGINT arrives during a training step (what Ctrl-C or a cluster's
SIGTERM does); the trainer saves last.pth at the step boundary and stops. A new Trainer (new model,
optimizer, data loader; global random generators scrambled) resumes from the file.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from msanet_lib.runtime import seed_all
from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.config import TrainConfig
from msanet_lib.training.distributed import DistContext
from msanet_lib.training.engine import Trainer
from msanet_lib.training.stage0 import build_pretrain_stage
from msanet_lib.training.stage1 import build_base_stage
from msanet_lib.training.stage2 import build_meta_stage

CPU = DistContext(device=torch.device("cpu"))


def _trainer(cfg: TrainConfig, stage: str, out: Path) -> Trainer:
    seed_all(cfg.seed)  # same initial weights (the pipeline does the same)
    if stage == "pretrain":
        spec, recipe = build_pretrain_stage(cfg, CPU.device)
    elif stage == "base":
        spec, recipe = build_base_stage(cfg, CPU.device)
    else:
        spec, recipe = build_meta_stage(cfg, CPU.device, base_learner=None)
    return Trainer(spec, recipe, CPU, out, config=cfg.to_dict(), seed=cfg.seed,
                   workers=cfg.runtime.workers, progress=False, log_every=1)


def _interrupt_at(trainer: Trainer, iteration: int) -> None:
    """Make the step of ``iteration`` deliver SIGINT to this process, like a Ctrl-C."""
    step = trainer.spec.step

    def step_then_signal(model, batch):
        out = step(model, batch)
        if trainer.iteration == iteration:
            os.kill(os.getpid(), signal.SIGINT)
        return out

    trainer.spec.step = step_then_signal


def _assert_same_state(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    different = [k for k in a if not torch.equal(a[k], b[k])]
    assert not different, f"tensors differ after resume: {different[:5]}"


@pytest.mark.slow
@pytest.mark.parametrize(("stage", "stop_at"), [("meta", 4), ("base", 2), ("pretrain", 3)])
def test_interrupted_run_resumes_to_identical_weights(
    tiny_config: Callable[..., TrainConfig], tmp_path: Path, stage: str, stop_at: int
) -> None:
    # meta: 3 iterations per epoch, stopped inside epoch 2; base: 2 per epoch, stopped at the
    # end of epoch 1 before its validation; pretrain: 2 per epoch, stopped inside epoch 2.
    cfg = tiny_config()
    straight = _trainer(cfg, stage, tmp_path / "straight")
    initial = {k: v.clone() for k, v in straight.plain_model.state_dict().items()}
    done = straight.fit()
    assert not done.interrupted and done.iterations == 2 * straight.iters_per_epoch

    first = _trainer(cfg, stage, tmp_path / "resumed")
    _interrupt_at(first, stop_at)
    part = first.fit()
    assert part.interrupted and part.iterations == stop_at
    assert load_checkpoint(part.last_path)["iteration"] == stop_at

    torch.manual_seed(12345)  # the resumed run must not depend on the process's state
    second = _trainer(cfg, stage, tmp_path / "resumed")
    end = second.fit(resume=part.last_path)
    assert not end.interrupted and end.iterations == done.iterations

    a = load_checkpoint(done.last_path)
    b = load_checkpoint(end.last_path)
    _assert_same_state(a["state_dict"], b["state_dict"])
    learned = [k for k in initial if not torch.equal(initial[k], a["state_dict"][k])]
    assert len(learned) > 10  # the comparison is about weights that training changed
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values()):
        assert torch.equal(sa["momentum_buffer"], sb["momentum_buffer"])
    assert a["epoch"] == b["epoch"] == 2
    ha, hb = a["metrics"]["history"], b["metrics"]["history"]
    assert [r["loss"] for r in ha] == [r["loss"] for r in hb]
    assert [r["val_miou"] for r in ha] == [r["val_miou"] for r in hb]
    # the logs were rewritten from the checkpoint: one row per epoch, no duplicates
    rows = (tmp_path / "resumed" / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2


@pytest.mark.slow
def test_resume_refuses_another_stage(tiny_config: Callable[..., TrainConfig],
                                      tmp_path: Path) -> None:
    cfg = tiny_config()
    t = _trainer(cfg, "base", tmp_path / "b")
    result = t.fit(stop_at_iteration=1)
    other = _trainer(cfg, "meta", tmp_path / "m")
    with pytest.raises(ValueError, match="'base' checkpoint cannot resume the 'meta' stage"):
        other.fit(resume=result.last_path)
