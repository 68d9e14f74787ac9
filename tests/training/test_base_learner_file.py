"""Stage 2's ``load_base_learner``: our own stage-1 files (also from a DDP run) load, files for
another model are refused with the model named. That it reads the authors' BAM ``best.pth``
exactly as ``load_authors_checkpoint`` does is checked in tests/model/test_checkpoints.py."""

from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import pytest
import torch

from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.model.pspnet import PSPNet
from msanet_lib.training.checkpoint import save_checkpoint
from msanet_lib.training.stage2 import load_base_learner

CONFIG = MSANetConfig(backbone="resnet_toy", num_base_classes=6, base_hidden=16)


def _save(path: Path, stage: str, state: dict[str, torch.Tensor]) -> Path:
    return save_checkpoint(path, stage=stage, config={}, model_config={}, state_dict=state,
                           epoch=3, iteration=9, optimizer=None, scheduler=None, metrics={})


def test_our_stage1_checkpoint_from_a_ddp_run_loads(tmp_path: Path) -> None:
    torch.manual_seed(0)
    src = PSPNet(CONFIG)
    wrapped = OrderedDict(("module." + k, v) for k, v in src.state_dict().items())
    path = _save(tmp_path / "best.pth", "base", wrapped)
    torch.manual_seed(1)
    model = MSANet(CONFIG)
    assert load_base_learner(model, path) == f"backbone and base learner from {path}"
    assert torch.equal(model.learner_base[1][4].weight, src.cls[4].weight)
    assert torch.equal(model.learner_base[0].features[0][1].weight, src.ppm.features[0][1].weight)
    assert torch.equal(model.layer3[0].conv1.weight, src.layer3[0].conv1.weight)


def test_a_base_learner_for_other_classes_is_refused(tmp_path: Path) -> None:
    other = PSPNet(MSANetConfig(backbone="resnet_toy", num_base_classes=4, base_hidden=16))
    torch.save({"state_dict": other.state_dict()}, tmp_path / "best.pth")
    with pytest.raises(ValueError, match=r"does not fit MSANet\(backbone=resnet_toy, "
                       r"num_base_classes=6\): 0 tensors missing .* 2 with another shape"):
        load_base_learner(MSANet(CONFIG), tmp_path / "best.pth")


def test_a_stage0_checkpoint_is_not_a_base_learner(tmp_path: Path) -> None:
    path = _save(tmp_path / "s0.pth", "pretrain", PSPNet(CONFIG).state_dict())
    with pytest.raises(ValueError, match="'pretrain' checkpoint"):
        load_base_learner(MSANet(CONFIG), path)
