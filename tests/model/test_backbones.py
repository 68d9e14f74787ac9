"""Backbones: the authors' key names, sizes, parameter counts, and one-pass feature extraction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import BACKBONE_NAMES, Backbone, build_backbone
from msanet_lib.backbones.resnet import Bottleneck, ResNetBackbone
from msanet_lib.backbones.vgg import VGG_STAGE_BOUNDS, vgg16_bn_features

GOLDEN = Path(__file__).resolve().parents[1] / "fixtures" / "authors_golden"


def golden_keys(name: str) -> list[str]:
    """``state_dict_keys`` (the authors' MSANet keys, in order) of a golden fixture file."""
    return list(torch.load(GOLDEN / name)["state_dict_keys"])


def on_meta(name: str) -> Backbone:
    """A backbone whose tensors have shapes but no storage: instant, even for ResNet-101."""
    with torch.device("meta"):
        return build_backbone(name)


def randomise_bn(model: nn.Module, seed: int = 0) -> None:
    """Non-trivial BN statistics and affine terms, so eval-mode BN is not an identity."""
    g = torch.Generator().manual_seed(seed)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def n_params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- names and counts
def test_build_backbone_knows_all_names_and_rejects_others() -> None:
    assert set(BACKBONE_NAMES) == {"resnet50", "resnet101", "vgg16_bn", "resnet_toy"}
    for name in BACKBONE_NAMES:
        assert on_meta(name).name == name
    with pytest.raises(ValueError, match="backbone='resnet18'.*resnet50"):
        build_backbone("resnet18")


@pytest.mark.parametrize(("name", "golden"), [
    ("resnet50", "msanet_resnet50_1shot.pt"),
    ("vgg16_bn", "msanet_vgg_1shot.pt"),
])
def test_state_dict_keys_are_the_authors_in_order(name: str, golden: str) -> None:
    authors = [k for k in golden_keys(golden) if k.startswith("layer")]
    ours = list(on_meta(name).state_dict())
    assert ours == authors


def test_resnet101_adds_seventeen_bottlenecks_to_resnet50() -> None:
    # Spec §6: MSANet has 394 keys with R50 and 700 with R101; the difference is 17 more
    # layer3 bottlenecks of 18 entries (3 convs + 3 BN x 5).
    r50 = list(on_meta("resnet50").state_dict())
    r101 = list(on_meta("resnet101").state_dict())
    assert len(r101) - len(r50) == 700 - 394 == 17 * 18
    assert "layer3.22.downsample.0.weight" not in r101
    assert "layer3.22.conv3.weight" in r101 and "layer3.23.conv1.weight" not in r101


def test_layer0_indices_and_dilation_scheme() -> None:
    r50 = on_meta("resnet50")
    assert [k for k in r50.layer0.state_dict() if k.endswith("weight")] == [
        "0.weight", "1.weight", "3.weight", "4.weight", "6.weight", "7.weight"
    ]
    for stage_index, (stride, dilation) in enumerate([(1, 1), (2, 1), (1, 2), (1, 4)], start=1):
        for block in getattr(r50, f"layer{stage_index}"):
            assert block.conv2.dilation == (dilation, dilation)
            assert block.conv2.padding == (dilation, dilation)
            if block.downsample is not None:
                assert block.downsample[0].stride == (stride, stride)
        assert getattr(r50, f"layer{stage_index}")[0].conv2.stride == (stride, stride)


def test_parameter_counts_match_the_authors_models() -> None:
    # Spec §1.12: total - learnable - learner_base (23,082,000 for R50/R101, 4,990,992 for VGG).
    assert n_params(on_meta("resnet50")) == 51_845_590 - 5_131_782 - 23_082_000
    assert n_params(on_meta("resnet101")) == 70_838_806 - 5_132_870 - 23_082_000
    assert n_params(on_meta("vgg16_bn")) == 24_452_310 - 4_738_182 - 4_990_992
    assert n_params(build_backbone("resnet_toy")) < 1_000_000


# ----------------------------------------------------------------------------- sizes
@pytest.mark.parametrize(("name", "size", "expected"), [
    ("resnet50", 473, [119, 119, 60, 60, 60]),
    ("resnet50", 641, [161, 161, 81, 81, 81]),
    ("resnet50", 129, [33, 33, 17, 17, 17]),
    ("resnet101", 473, [119, 119, 60, 60, 60]),
    ("vgg16_bn", 473, [237, 119, 60, 30, 30]),
    ("vgg16_bn", 129, [65, 33, 17, 9, 9]),
    ("resnet_toy", 129, [33, 33, 17, 17, 17]),
])
def test_stage_sizes_channels_and_feats(name: str, size: int, expected: list[int]) -> None:
    backbone = on_meta(name)
    with torch.device("meta"):
        out = backbone(torch.empty(2, 3, size, size))
    assert [t.shape[-1] for t in out.layers] == expected
    assert [t.shape[-2] for t in out.layers] == expected
    assert tuple(t.shape[1] for t in out.layers) == backbone.channels
    assert len(out.feats) == backbone.num_feats
    n2, n3, n4 = backbone.feat_groups
    groups = out.feats[-(n2 + n3 + n4):]
    if name.startswith("vgg"):
        assert backbone.feat_groups == (3, 3, 1) and len(out.feats) == 7
        assert all(f.shape[1] == 512 for f in out.feats)
        assert [f.shape[-1] for f in out.feats] == [expected[2]] * 3 + [expected[3]] * 4
    else:
        # Every map after layer1's last block: layer2, layer3, layer4 blocks in order.
        assert [f.shape[1] for f in groups] == (
            [backbone.channels[2]] * n2 + [backbone.channels[3]] * n3 + [backbone.channels[4]] * n4
        )
        assert out.feats[0].shape[1:] == out.layers[1].shape[1:]
        assert len(out.feats) == 1 + n2 + n3 + n4


def test_feat_groups_match_the_spec() -> None:
    assert on_meta("resnet50").feat_groups == (4, 6, 3) and on_meta("resnet50").num_feats == 14
    assert on_meta("resnet101").feat_groups == (4, 23, 3) and on_meta("resnet101").num_feats == 31
    assert on_meta("resnet_toy").feat_groups == (2, 2, 2) and on_meta("resnet_toy").num_feats == 7


# ----------------------------------------------------------------------------- numerics
def naive_bottleneck(block: Bottleneck, x: Tensor, stride: int, dilation: int) -> Tensor:
    """The bottleneck written out with functional ops; returns the pre-ReLU residual sum."""

    def bn(m: nn.BatchNorm2d, t: Tensor) -> Tensor:
        return F.batch_norm(t, m.running_mean, m.running_var, m.weight, m.bias, False, 0.0, m.eps)

    out = F.relu(bn(block.bn1, F.conv2d(x, block.conv1.weight)))
    out = F.conv2d(out, block.conv2.weight, stride=stride, padding=dilation, dilation=dilation)
    out = F.relu(bn(block.bn2, out))
    out = bn(block.bn3, F.conv2d(out, block.conv3.weight))
    shortcut = x
    if block.downsample is not None:
        shortcut = bn(block.downsample[1], F.conv2d(x, block.downsample[0].weight, stride=stride))
    return out + shortcut


@torch.no_grad()
def test_resnet50_feats_equal_a_naive_bottleneck_recomputation() -> None:
    torch.manual_seed(0)
    backbone = build_backbone("resnet50")
    randomise_bn(backbone)
    backbone.eval()
    x = torch.randn(1, 3, 33, 33)
    out = backbone(x)
    feat = backbone.layer0(x)
    naive_feats, naive_layers = [], [feat]
    for stage_index, (stride, dilation) in enumerate([(1, 1), (2, 1), (1, 2), (1, 4)], start=1):
        for block_index, block in enumerate(getattr(backbone, f"layer{stage_index}")):
            pre = naive_bottleneck(block, feat, stride if block_index == 0 else 1, dilation)
            naive_feats.append(pre)
            feat = F.relu(pre)
        naive_layers.append(feat)
    # Authors' feat_ids 3..16: every block from layer1's third (last) one on.
    naive_feats = naive_feats[2:]
    assert len(out.feats) == len(naive_feats) == 14
    for ours, ref in zip(out.feats, naive_feats):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    for ours, ref in zip(out.layers, naive_layers):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4)
    # Pre-activation maps can be negative; the stage output is their ReLU.
    assert out.feats[-1].min() < 0
    torch.testing.assert_close(out.layers[4], out.feats[-1].relu())
    torch.testing.assert_close(out.layers[1], out.feats[0].relu())


@pytest.mark.parametrize("name", ["resnet50", "resnet_toy", "vgg16_bn"])
@torch.no_grad()
def test_layers_equal_a_plain_sequential_pass(name: str) -> None:
    torch.manual_seed(1)
    backbone = build_backbone(name)
    randomise_bn(backbone)
    backbone.eval()
    x = torch.randn(2, 3, 41, 37)
    out = backbone(x)
    feat = x
    for stage, ours in zip(backbone.stages(), out.layers):
        feat = stage(feat)
        torch.testing.assert_close(ours, feat)


@torch.no_grad()
def test_toy_feats_are_the_pre_relu_block_outputs() -> None:
    torch.manual_seed(2)
    backbone = build_backbone("resnet_toy")
    randomise_bn(backbone)
    backbone.eval()
    x = torch.randn(1, 3, 49, 49)
    out = backbone(x)
    expected, feat = [], backbone.layer0(x)
    for stage_index in range(1, 5):
        for block in getattr(backbone, f"layer{stage_index}"):
            # BasicBlock by hand: conv-BN-ReLU, conv-BN, + shortcut.
            y = block.bn2(block.conv2(F.relu(block.bn1(block.conv1(feat)))))
            pre = y + (feat if block.downsample is None else block.downsample(feat))
            expected.append(pre)
            feat = F.relu(pre)
    assert len(out.feats) == 7
    for ours, ref in zip(out.feats, expected[1:]):
        torch.testing.assert_close(ours, ref)
    assert out.layers[3].shape[-1] == out.layers[2].shape[-1] == 7  # output stride 8


@torch.no_grad()
def test_vgg_feats_are_the_authors_seven_maps() -> None:
    torch.manual_seed(3)
    backbone = build_backbone("vgg16_bn")
    randomise_bn(backbone)
    backbone.eval()
    x = torch.randn(1, 3, 35, 35)
    out = backbone(x)
    # Run the uncut VGG16-bn ``features`` holding the same modules and record global convs
    # 24, 27, 30, 34, 37, 40 (before BN), then the output of index 42.
    features = nn.Sequential(*[m for stage in backbone.stages() for m in stage])
    assert len(features) == VGG_STAGE_BOUNDS[-1][1] == 43
    assert [type(m) for m in features] == [type(m) for m in vgg16_bn_features()[:43]]
    captured, feat = [], x
    for index, module in enumerate(features):
        feat = module(feat)
        if index in (24, 27, 30, 34, 37, 40):
            assert isinstance(module, nn.Conv2d)
            captured.append(feat.clone())
    captured.append(feat)
    assert len(out.feats) == 7
    for ours, ref in zip(out.feats, captured):
        torch.testing.assert_close(ours, ref)
    assert out.feats[0].min() < 0  # before BN/ReLU


@pytest.mark.parametrize("name", ["resnet_toy", "vgg16_bn"])
def test_every_conv_runs_exactly_once_per_forward(name: str) -> None:
    backbone = build_backbone(name).eval()
    calls: dict[str, int] = {}
    for conv_name, m in backbone.named_modules():
        if isinstance(m, nn.Conv2d):
            m.register_forward_hook(
                lambda *_, key=conv_name: calls.__setitem__(key, calls.get(key, 0) + 1)
            )
    with torch.no_grad():
        backbone(torch.randn(1, 3, 33, 33))
    n_convs = sum(isinstance(m, nn.Conv2d) for m in backbone.modules())
    assert len(calls) == n_convs and set(calls.values()) == {1}


def test_toy_backbone_trains_from_scratch() -> None:
    torch.manual_seed(4)
    backbone = build_backbone("resnet_toy").train()
    assert isinstance(backbone, ResNetBackbone)
    # Kaiming (fan_out) init: conv weight std close to sqrt(2 / fan_out).
    w = backbone.layer4[1].conv2.weight
    assert abs(w.std().item() - (2 / (w.shape[0] * 9)) ** 0.5) < 0.01
    out = backbone(torch.randn(2, 3, 33, 33))
    loss = out.layers[4].mean() + sum(f.mean() for f in out.feats)
    loss.backward()
    for pname, p in backbone.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), pname
        assert p.grad.abs().sum() > 0, pname


def test_dtype_follows_the_input() -> None:
    backbone = build_backbone("resnet_toy").double().eval()
    with torch.no_grad():
        out = backbone(torch.randn(1, 3, 33, 33, dtype=torch.float64))
    assert all(t.dtype == torch.float64 for t in out.layers + out.feats)
