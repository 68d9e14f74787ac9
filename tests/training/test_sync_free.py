"""The training step never waits for the device, and torch.compile sees one graph per forward.

A host sync (``.item()``, ``bool(t)``, ``int(t)``, a data-dependent shape such as ``nonzero``)
stalls the CPU until the GPU's queue drains. On the CPU the tests record the ATen calls that
would sync on an accelerator, under :func:`~msanet_lib.runtime.static_padding` (the padding
sizes every accelerator uses). ``scripts/gpu_check.sh`` runs the CUDA version
(``torch.cuda.set_sync_debug_mode``) in tests/training/test_cuda.py.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch
from torch.utils._python_dispatch import TorchDispatchMode

from msanet_lib.model.msanet import MSANet
from msanet_lib.runtime import padded_length, seed_all, static_padding
from msanet_lib.training.config import TrainConfig
from msanet_lib.training.distributed import DistContext
from msanet_lib.training.engine import Trainer
from msanet_lib.training.stage1 import build_base_stage
from msanet_lib.training.stage2 import build_meta_stage

CPU = DistContext(device=torch.device("cpu"))
# ATen ops that read a device value on the host (the first) or size an output from data
SYNCING = {"_local_scalar_dense", "nonzero", "masked_select", "unique", "_unique2",
           "unique_dim", "unique_consecutive", "repeat_interleave", "_assert_async"}


class HostReads(TorchDispatchMode):
    """Counts the syncing ATen calls (boolean-mask indexing, which calls nonzero, included)."""

    def __init__(self) -> None:
        super().__init__()
        self.calls: collections.Counter[str] = collections.Counter()

    def __torch_dispatch__(self, func: Any, types: Any, args: tuple = (),
                           kwargs: dict | None = None) -> Any:
        name = func.overloadpacket.__name__
        bool_index = name in ("index", "index_put", "index_put_") and any(
            isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in (args[1] or []))
        if name in SYNCING or bool_index:
            self.calls[name] += 1
        return func(*args, **(kwargs or {}))


def _record_steps(trainer: Trainer, steps: int) -> tuple[HostReads, int]:
    """Train ``steps`` iterations (none of them a log point); record inside every iteration's
    step and stop check (the rest of the loop is Python: the lr schedule, the counters)."""
    reads, calls = HostReads(), [0]
    for name in ("_train_step", "_should_stop"):
        original = getattr(trainer, name)

        def recorded(*args: Any, _original: Callable = original) -> Any:
            calls[0] += 1
            with reads:
                return _original(*args)

        setattr(trainer, name, recorded)
    trainer.fit(stop_at_iteration=steps)
    return reads, calls[0] // 2


@pytest.mark.parametrize("stage", ["base", "meta"])
def test_a_non_logging_training_step_reads_nothing_on_the_host(
        stage: str, tiny_config: Callable[..., TrainConfig], tmp_path: Path) -> None:
    cfg = tiny_config()
    seed_all(cfg.seed)
    spec, recipe = (build_meta_stage(cfg, CPU.device, base_learner=None) if stage == "meta"
                    else build_base_stage(cfg, CPU.device, init="scratch"))
    trainer = Trainer(spec, recipe, CPU, tmp_path / stage, config=cfg.to_dict(), seed=cfg.seed,
                      progress=False, log_every=1000)
    with static_padding():
        reads, steps = _record_steps(trainer, 2)
    assert steps == 2
    assert dict(reads.calls) == {}, f"host syncs in a {stage} training step: {dict(reads.calls)}"


def test_the_recorder_sees_the_cpu_paddings_host_read(tiny_config: Callable[..., TrainConfig],
                                                      tmp_path: Path) -> None:
    """Control: on the CPU (no static_padding) the selections are sized by reading counts."""
    cfg = tiny_config()
    seed_all(cfg.seed)
    spec, recipe = build_meta_stage(cfg, CPU.device, base_learner=None)
    trainer = Trainer(spec, recipe, CPU, tmp_path, config=cfg.to_dict(), seed=cfg.seed,
                      progress=False, log_every=1000)
    reads, _ = _record_steps(trainer, 1)
    assert reads.calls["_local_scalar_dense"] >= 2  # multi-similarity and prior padding


def test_padded_length_is_static_off_the_cpu() -> None:
    counts = torch.tensor([3, 7, 0])
    assert padded_length(counts, 100) == 7 and padded_length(counts, 100, extra=1) == 8
    assert padded_length(torch.zeros(3, dtype=torch.long), 100) == 1  # never an empty gather
    assert padded_length(counts, 5) == 5
    assert padded_length(counts.to("meta"), 100) == 100  # any non-CPU device: the bound
    with static_padding():
        assert padded_length(counts, 100) == 100


def _toy_msanet() -> tuple[MSANet, tuple[torch.Tensor, ...], dict[str, torch.Tensor]]:
    """The toy MSANet (narrow heads) on a 48-pixel, 1-shot batch of two episodes."""
    from msanet_lib.training.config import load_config

    cfg = load_config("toy", {"model": {"reduce_dim": 16, "hyper_dim": 8, "base_hidden": 16}},
                      fast=False)
    torch.manual_seed(0)
    model = MSANet(cfg.model_config())
    model.freeze_pretrained()
    model.trusted_inputs = True
    g = torch.Generator().manual_seed(0)
    x, s_x = torch.randn(2, 3, 48, 48, generator=g), torch.randn(2, 1, 3, 48, 48, generator=g)
    s_y = torch.zeros(2, 1, 48, 48)
    s_y[0, 0, 8:30, 10:40] = 1  # a box and a smaller one: different selection counts
    s_y[1, 0, 20:28, 5:15] = 1
    targets = {"y_m": (torch.rand(2, 48, 48, generator=g) > 0.5).long(),
               "y_b": torch.randint(0, 16, (2, 48, 48), generator=g),
               "cat_idx": torch.tensor([1, 3])}
    return model, (x, s_x, s_y), targets


def test_static_padding_changes_no_output() -> None:
    model, inputs, _ = _toy_msanet()
    model.eval()
    with torch.no_grad():
        plain = model(*inputs)
        with static_padding():
            static = model(*inputs)
    for a, b in zip(plain[:3], static[:3]):
        torch.testing.assert_close(b, a, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("mode", ["train", "eval"])
def test_dynamo_traces_the_forward_in_one_graph(mode: str) -> None:
    """Measured with torch 2.14: 1 graph, 0 breaks (16 graphs / 15 breaks when the paddings
    read their size with ``int(count.max())``)."""
    import torch._dynamo as dynamo

    model, inputs, targets = _toy_msanet()
    model.train(mode == "train")
    kwargs = targets if mode == "train" else {}
    dynamo.reset()
    try:
        report = dynamo.explain(model)(*inputs, **kwargs)
    finally:
        dynamo.reset()
    reasons = [r.reason.splitlines()[0] for r in report.break_reasons]
    assert report.graph_count <= 2 and report.graph_break_count <= 1, reasons
