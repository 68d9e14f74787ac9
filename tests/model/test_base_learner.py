"""PPM, the PSPNet classifier (``learner_base``) and the stage-1 PSPNet model."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from msanet_lib.model.pspnet import PSPNet, PSPNetTrainOutput
from msanet_lib.modules.base_learner import PPM, BaseLearner

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "authors_golden"


def golden_keys(name: str) -> list[str]:
    return list(torch.load(GOLDEN / name)["state_dict_keys"])


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- learner_base
@pytest.mark.parametrize(("golden", "in_dim"), [
    ("msanet_resnet50_1shot.pt", 2048),
    ("msanet_vgg_1shot.pt", 512),
])
def test_learner_base_keys_are_the_authors(golden: str, in_dim: int) -> None:
    with torch.device("meta"):
        learner = BaseLearner(in_dim, 16)
    authors = [k for k in golden_keys(golden) if k.startswith("learner_base.")]
    assert ["learner_base." + k for k in learner.state_dict()] == authors


def test_learner_base_parameter_counts() -> None:
    with torch.device("meta"):
        pascal = BaseLearner(2048, 16)
        coco = BaseLearner(2048, 61)
    assert n_params(pascal) == 23_082_000  # spec §1.12
    assert n_params(coco) == 23_105_085
    assert pascal.cls[0].weight.shape == (512, 4096, 3, 3)
    assert pascal.cls[4].weight.shape == (16, 512, 1, 1)
    assert isinstance(pascal.cls[3], nn.Dropout2d) and pascal.cls[3].p == 0.1


@torch.no_grad()
def test_ppm_branches_by_hand() -> None:
    torch.manual_seed(0)
    ppm = PPM(8, 2, bins=(1, 2)).eval()
    for branch in ppm.features:  # non-trivial BN
        branch[2].running_mean.uniform_(-0.2, 0.2)
        branch[2].running_var.uniform_(0.5, 1.5)
    x = torch.randn(3, 8, 5, 5)
    out = ppm(x)
    assert out.shape == (3, 8 + 2 * 2, 5, 5) and ppm.out_channels == 12
    torch.testing.assert_close(out[:, :8], x)

    def conv_bn_relu(branch: nn.Sequential, pooled: torch.Tensor) -> torch.Tensor:
        conv, bn = branch[1], branch[2]
        z = torch.einsum("oc,bchw->bohw", conv.weight[:, :, 0, 0], pooled)
        z = (z - bn.running_mean[:, None, None]) / torch.sqrt(bn.running_var[:, None, None] + bn.eps)
        return torch.relu(z * bn.weight[:, None, None] + bn.bias[:, None, None])

    # bin 1: the global mean, constant over the map.
    g = conv_bn_relu(ppm.features[0], x.mean(dim=(2, 3), keepdim=True))
    torch.testing.assert_close(out[:, 8:10], g.expand(-1, -1, 5, 5))
    # bin 2 on 5x5: adaptive cells rows/cols {0,1,2} and {2,3,4}; align_corners=True puts the
    # 2x2 values exactly on the four corners.
    cells = torch.stack([
        torch.stack([x[:, :, r0:r1, c0:c1].mean(dim=(2, 3)) for c0, c1 in ((0, 3), (2, 5))], -1)
        for r0, r1 in ((0, 3), (2, 5))
    ], -2)
    b = conv_bn_relu(ppm.features[1], cells)
    corners = out[:, 10:12][:, :, [0, 0, 4, 4], [0, 4, 0, 4]]
    torch.testing.assert_close(corners, b.flatten(2))


def test_classifier_dropout_is_active_only_in_training() -> None:
    torch.manual_seed(1)
    learner = BaseLearner(16, 3, hidden=8)
    x = torch.randn(2, 16, 6, 6)
    learner.eval()
    torch.testing.assert_close(learner(x), learner(x))
    learner.train()
    assert not torch.allclose(learner(x), learner(x))
    assert learner(x).shape == (2, 3, 6, 6)


# ----------------------------------------------------------------------------- PSPNet
def bam_pspnet_keys(golden: str) -> list[str]:
    """BAM's PSPNet keys without the encoder duplicate, derived from the authors' MSANet keys."""
    keys = golden_keys(golden)
    backbone = [k for k in keys if k.startswith("layer")]
    ppm = [k.replace("learner_base.0.", "ppm.") for k in keys if k.startswith("learner_base.0.")]
    cls = [k.replace("learner_base.1.", "cls.") for k in keys if k.startswith("learner_base.1.")]
    return backbone + ppm + cls


@pytest.mark.parametrize(("backbone", "golden"), [
    ("resnet50", "msanet_resnet50_1shot.pt"),
    ("vgg16_bn", "msanet_vgg_1shot.pt"),
])
def test_pspnet_keys_are_bams(backbone: str, golden: str) -> None:
    with torch.device("meta"):
        model = PSPNet(backbone=backbone, num_classes=16)
    assert list(model.state_dict()) == bam_pspnet_keys(golden)


def test_pspnet_from_an_msanet_style_config() -> None:
    config = SimpleNamespace(backbone="resnet_toy", num_base_classes=7, base_hidden=24)
    model = PSPNet(config)
    assert model.cls[4].out_channels == 7 and model.cls[0].out_channels == 24
    assert model.ppm.features[0][1].in_channels == model.backbone.channels[4] == 128
    assert model.backbone.layer4 is model.layer4
    with pytest.raises(ValueError, match="num_classes"):
        PSPNet(backbone="resnet_toy", num_classes=1)


@torch.no_grad()
def test_pspnet_eval_returns_logits_at_input_size() -> None:
    torch.manual_seed(2)
    model = PSPNet(backbone="resnet_toy", num_classes=5).eval()
    x = torch.randn(2, 3, 57, 41)
    logits = model(x)
    assert logits.shape == (2, 5, 57, 41)
    low = model.cls(model.ppm(model.backbone(x).layers[4]))
    assert low.shape[-2:] == (8, 6)
    ref = F.interpolate(low, size=(57, 41), mode="bilinear", align_corners=True)
    torch.testing.assert_close(logits, ref)
    # In eval mode a label does not change the output (as BAM's PSPNet).
    torch.testing.assert_close(model(x, torch.zeros(2, 57, 41, dtype=torch.long)), logits)


def test_pspnet_training_loss_ignores_255_and_reaches_every_parameter() -> None:
    torch.manual_seed(3)
    model = PSPNet(backbone="resnet_toy", num_classes=4).train()
    x = torch.randn(2, 3, 33, 33)
    y = torch.randint(0, 4, (2, 33, 33))
    y[:, :5] = 255
    torch.manual_seed(10)
    out = model(x, y)
    assert isinstance(out, PSPNetTrainOutput)
    torch.manual_seed(10)  # same dropout mask
    logits = model(x)
    keep = y != 255
    manual = -torch.log_softmax(logits, 1).gather(1, y.clamp(max=3)[:, None])[:, 0][keep].mean()
    torch.testing.assert_close(out.loss, manual)
    torch.testing.assert_close(out.pred, logits.argmax(1))
    out.loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_pspnet_rejects_bad_shapes() -> None:
    model = PSPNet(backbone="resnet_toy", num_classes=4).train()
    with pytest.raises(ValueError, match=r"x must be \(B, 3, H, W\)"):
        model(torch.randn(3, 33, 33))
    with pytest.raises(ValueError, match=r"y must be \(B, H, W\)"):
        model(torch.randn(2, 3, 33, 33), torch.zeros(2, 32, 33, dtype=torch.long))
    with pytest.raises(ValueError, match="batch of at least 2"):
        model(torch.randn(1, 3, 33, 33))
    assert model.eval()(torch.randn(1, 3, 33, 33)).shape == (1, 4, 33, 33)
