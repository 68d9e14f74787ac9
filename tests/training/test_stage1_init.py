"""Stage 1 starts its backbone from scratch, the authors' ImageNet file, or a weights path."""

from pathlib import Path

import pytest
import torch

from msanet_lib.model.msanet import MSANetConfig
from msanet_lib.model.pspnet import PSPNet
from msanet_lib.training.stage1 import init_backbone


def _toy() -> PSPNet:
    return PSPNet(MSANetConfig(backbone="resnet_toy", base_hidden=16, num_base_classes=4))


def test_init_from_a_weights_path_copies_every_backbone_tensor(tmp_path: Path) -> None:
    source = _toy()
    path = tmp_path / "backbone.pth"
    torch.save({"state_dict": source.state_dict()}, path)
    target = _toy()
    note = init_backbone(target, str(path))
    assert "0 left as initialised" in note
    for key, value in source.state_dict().items():
        if key.startswith("layer"):
            assert torch.equal(target.state_dict()[key], value), key


def test_imagenet_init_looks_for_the_authors_file_in_the_data_root(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSANET_DATA", str(tmp_path))
    # the toy backbone's "ImageNet" is the shipped stage 0, whatever the data root
    note = init_backbone(_toy(), "imagenet")
    assert "stage0" in note and "0 left as initialised" in note
    big = PSPNet(MSANetConfig(backbone="resnet50"))
    with pytest.raises(FileNotFoundError, match="initmodel"):
        init_backbone(big, "imagenet")


def test_missing_weights_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope.pth"):
        init_backbone(_toy(), str(tmp_path / "nope.pth"))


def test_a_stage2_model_can_seed_another_stage2_run(tmp_path: Path) -> None:
    """``meta.base_learner`` accepts a stage-2 export: its frozen backbone and base learner
    (the notebooks' experiments start from the shipped toy models this way); its meta learner
    is not copied."""
    from msanet_lib.model.msanet import MSANet, MSANetConfig
    from msanet_lib.training.checkpoint import export_model
    from msanet_lib.training.config import load_config
    from msanet_lib.training.stage2 import load_base_learner

    config = load_config("toy").model_config()
    torch.manual_seed(0)
    trained = MSANet(MSANetConfig(**config.__dict__))
    path = tmp_path / "msanet_1shot.pth"
    export_model(path, stage="meta", model_config=config.__dict__, state_dict=trained.state_dict(),
                 metrics={}, config={})
    torch.manual_seed(1)
    fresh = MSANet(MSANetConfig(**config.__dict__))
    load_base_learner(fresh, path)
    mine, theirs = fresh.state_dict(), trained.state_dict()
    frozen = [k for k in mine if k.split(".")[0] in ("layer0", "layer4", "learner_base")]
    assert frozen and all(torch.equal(mine[k], theirs[k]) for k in frozen)
    assert not torch.equal(mine["cls_meta.0.weight"], theirs["cls_meta.0.weight"])
