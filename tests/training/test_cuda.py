"""GPU paths, run where CUDA exists (``scripts/gpu_check.sh``); skipped on a CPU-only machine.

The training tests run the real ``msanet-train`` command on the tiny toy config (both stages)
with one GPU setting each and check that both stages finished with finite losses and a finite
validation score (run on the GPU after every epoch). float16 runs use a GradScaler (the engine
enables it for ``--amp fp16``). The autocast test checks the eval forward with large
activations: the similarity, prior and Gram products stay in float32 inside autocast, so the
output must be finite and close to float32's.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
import yaml

from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.training.__main__ import main

from .conftest import TINY

cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
pytestmark = [cuda, pytest.mark.cuda]


def _train(toy_root: Path, tmp_path: Path, *flags: str) -> None:
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    tiny = {**TINY, "runtime": {**TINY["runtime"], "device": "cuda"}}
    config.write_text(yaml.safe_dump({"extends": "toy", "data_root": str(toy_root),
                                      "out": str(out), **tiny}))
    assert main(["--config", str(config), "--shots", "1", *flags]) == 0
    for stage in ("base", "meta_1shot"):
        done = json.loads((out / stage / "done.json").read_text())
        assert math.isfinite(done["best_miou"])
        for line in (out / stage / "log.jsonl").read_text().splitlines():
            record = json.loads(line)
            if "loss" in record:
                assert math.isfinite(record["loss"]), (stage, record)


@pytest.mark.parametrize("flags", [("--amp", "fp16"), ("--amp", "bf16"), ("--channels-last",),
                                   ("--compile",)], ids=["fp16", "bf16", "channels_last",
                                                         "compile"])
def test_both_stages_train_on_the_gpu(toy_root: Path, tmp_path: Path, flags: tuple[str, ...]
                                      ) -> None:
    _train(toy_root, tmp_path, *flags)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=["fp16", "bf16"])
def test_eval_forward_under_autocast_is_finite_and_close(dtype: torch.dtype) -> None:
    """Large activations (inputs x8) overflowed float16 in the Gram matrix and the prior."""
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet_toy", reduce_dim=32, hyper_dim=16,
                                base_hidden=32)).cuda().eval()
    x = 8 * torch.randn(2, 3, 96, 96, device="cuda")
    s_x = 8 * torch.randn(2, 1, 3, 96, 96, device="cuda")
    s_y = (torch.rand(2, 1, 96, 96, device="cuda") > 0.5).long()
    with torch.no_grad():
        ref = model(x, s_x, s_y).final_out.softmax(1)
        with torch.autocast("cuda", dtype=dtype):
            out = model(x, s_x, s_y).final_out.float().softmax(1)
    assert torch.isfinite(out).all()
    assert (out - ref).abs().max() < 0.1


@pytest.mark.parametrize("stage", ["base", "meta"])
def test_a_non_logging_training_step_never_syncs_the_gpu(stage: str, toy_root: Path,
                                                         tmp_path: Path) -> None:
    """torch.cuda.set_sync_debug_mode("error") raises on any host sync inside the steps
    (the CPU twin, tests/training/test_sync_free.py, records the same ops)."""
    from msanet_lib.runtime import seed_all
    from msanet_lib.training.config import load_config
    from msanet_lib.training.distributed import DistContext
    from msanet_lib.training.engine import Trainer
    from msanet_lib.training.stage1 import build_base_stage
    from msanet_lib.training.stage2 import build_meta_stage

    cfg = load_config("toy", {**TINY, "data_root": str(toy_root), "out": str(tmp_path)},
                      fast=False)
    ctx = DistContext(device=torch.device("cuda", torch.cuda.current_device()))
    seed_all(cfg.seed)
    spec, recipe = (build_meta_stage(cfg, ctx.device, base_learner=None) if stage == "meta"
                    else build_base_stage(cfg, ctx.device, init="scratch"))
    trainer = Trainer(spec, recipe, ctx, tmp_path / stage, config=cfg.to_dict(), seed=cfg.seed,
                      progress=False, log_every=1000)
    step, steps = trainer._train_step, []

    def checked(group: list) -> torch.Tensor:
        steps.append(len(group))
        if len(steps) == 1:  # the first step allocates the loss sums; the others must not sync
            return step(group)
        torch.cuda.set_sync_debug_mode("error")
        try:
            return step(group)
        finally:
            torch.cuda.set_sync_debug_mode("default")

    trainer._train_step = checked
    trainer.fit(stop_at_iteration=3)
    assert len(steps) == 3


SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "toy" / "fold0" / "msanet_1shot.pth"


def _eval_miou(toy_root: Path, tmp_path: Path, name: str, *flags: str) -> float:
    from msanet_lib.evaluation.__main__ import main as eval_main

    out = tmp_path / f"{name}.json"
    assert eval_main(["--checkpoint", str(SHIPPED), "--data-root", str(toy_root), "--episodes",
                      "64", "--seeds", "321", "--batch-size", "8", "--json", str(out),
                      *flags]) == 0
    return json.loads(out.read_text())["folds"]["0"]["summary"]["mean_miou"]


def test_the_shipped_toy_model_scores_the_same_on_the_gpu(toy_root: Path, tmp_path: Path) -> None:
    """msanet-eval on the GPU (IEEE float32, TF32, bf16, fp16) against the CPU's float32 score on
    the same 64 episodes: float32 within 0.1 mIoU points, the others within 1."""
    cpu = _eval_miou(toy_root, tmp_path, "cpu", "--device", "cpu")
    gpu = {"fp32": _eval_miou(toy_root, tmp_path, "fp32", "--device", "cuda", "--no-tf32"),
           "tf32": _eval_miou(toy_root, tmp_path, "tf32", "--device", "cuda"),
           "bf16": _eval_miou(toy_root, tmp_path, "bf16", "--device", "cuda", "--amp", "bf16"),
           "fp16": _eval_miou(toy_root, tmp_path, "fp16", "--device", "cuda", "--amp", "fp16")}
    print({"cpu": cpu, **gpu})
    assert abs(gpu["fp32"] - cpu) < 1e-3
    for name in ("tf32", "bf16", "fp16"):
        assert abs(gpu[name] - cpu) < 1e-2, (name, gpu[name], cpu)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_two_nccl_processes_match_one_gpu(tiny_config, tmp_path: Path) -> None:
    """The gloo test of tests/training/test_ddp.py on two GPUs with NCCL: two stage-2 steps of a
    global batch of 4, split 2 + 2, end with the weights of one GPU taking the whole batch."""
    import socket
    import sys

    import torch.multiprocessing as mp

    from msanet_lib.training.checkpoint import load_checkpoint

    sys.path.insert(0, str(Path(__file__).parent))  # spawned children import ddp_helper too
    import ddp_helper

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = tiny_config(meta={"epochs": 1, "val_episodes": 2, "batch_size": 4,
                            "samples_per_epoch": 8}, runtime={"tf32": False})
    data = cfg.to_dict()
    one, two = tmp_path / "one", tmp_path / "two"
    mp.spawn(ddp_helper.train, args=(1, 0, data, str(one), "cuda"), nprocs=1, join=True)
    mp.spawn(ddp_helper.train, args=(2, port, data, str(two), "cuda"), nprocs=2, join=True)
    a, b = load_checkpoint(one / "last.pth"), load_checkpoint(two / "last.pth")
    assert a["iteration"] == b["iteration"] == 2
    ddp_helper.assert_same_weights(a, b, atol=1e-5)


def test_support_layer4_box_on_the_gpu_gives_the_whole_map_outputs() -> None:
    """The evaluation copy's support-layer4 box (ResNet-50, 473 px) on CUDA, IEEE float32."""
    from msanet_lib.model.inference import prepare_for_inference

    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet50", shots=2)).eval()
    g = torch.Generator().manual_seed(1)
    x, s_x = torch.randn(2, 3, 473, 473, generator=g), torch.randn(2, 2, 3, 473, 473, generator=g)
    s_y = torch.zeros(2, 2, 473, 473, dtype=torch.long)
    s_y[..., 94:236, 157:315] = 1
    previous = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        outs = []
        for box in (False, True):
            net = prepare_for_inference(model, support_layer4_box=box).cuda()
            assert (net._layer4_radii is not None) == box
            with torch.inference_mode():
                outs.append(net(x.cuda(), s_x.cuda(), s_y.cuda()))
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = previous
    for whole, boxed in zip(*outs):
        torch.testing.assert_close(boxed, whole, rtol=1e-4, atol=1e-4)


def test_the_feature_cache_on_the_gpu_gives_the_uncached_scores(toy_root: Path,
                                                                tmp_path: Path) -> None:
    """msanet-eval --feature-cache on CUDA against the uncached run (batches of 8)."""
    plain = _eval_miou(toy_root, tmp_path, "plain", "--device", "cuda", "--no-tf32")
    cached = _eval_miou(toy_root, tmp_path, "cached", "--device", "cuda", "--no-tf32",
                        "--feature-cache", "512")
    print({"plain": plain, "cached": cached})
    assert abs(cached - plain) < 1e-3
