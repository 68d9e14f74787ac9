"""Deep-stem, dilated ResNets as used by PSPNet, BAM and MSANet (spec §1.1-1.2).

Differences from torchvision's ResNet, all taken from the authors' code:

- a *deep stem*: three 3x3 convs (3->64 stride 2, 64->64, 64->128), each with BN and ReLU,
  then a 3x3 stride-2 max-pool; ``layer0`` is that Sequential, so its state-dict indices are
  0, 1, 3, 4, 6, 7 (conv, BN, -, conv, BN, -, conv, BN, -, pool);
- stride on the 3x3 conv of a bottleneck (v1.5);
- output stride 8: layer3 and layer4 keep stride 1 and dilate *every* block's 3x3 conv
  (dilation 2 and 4); torchvision's ``replace_stride_with_dilation`` would leave the first
  block undilated.

Each block can return its output *before* the final ReLU (``forward_pre_activation``), which is
what the multi-similarity module correlates; the backbone's forward collects those maps and the
stage outputs in one pass, running every block exactly once.
"""

from __future__ import annotations

from typing import ClassVar

import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones.base import Backbone, BackboneOutput

# Per-stage (stride, dilation): output stride 4 after layer0, 8 after layer2, kept after that.
STAGE_STRIDES = (1, 2, 1, 1)
STAGE_DILATIONS = (1, 1, 2, 4)


class Bottleneck(nn.Module):
    """ResNet bottleneck 1x1 -> 3x3 (stride, dilation) -> 1x1 (x4 channels), plus a shortcut.

    Attribute names (``conv1, bn1, conv2, bn2, conv3, bn3, downsample``) are the authors', so
    state-dict keys such as ``layer1.0.downsample.0.weight`` match their checkpoints.
    """

    expansion: ClassVar[int] = 4
    # Each convolution's only reader is the BatchNorm after it: evaluation folds these pairs.
    CONV_BN_PAIRS: ClassVar[tuple[tuple[str, str], ...]] = (
        ("conv1", "bn1"), ("conv2", "bn2"), ("conv3", "bn3"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, kernel_size=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(
            planes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * self.expansion, kernel_size=1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * self.expansion)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_pre_activation(self, x: Tensor) -> Tensor:
        """Residual sum before the final ReLU: (B, C_in, H, W) -> (B, 4*planes, H/s, W/s)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        # In place: ``out`` is a fresh tensor that autograd does not save (convolution and
        # BatchNorm backward read their inputs), and a new (B, 4*planes, h, w) buffer costs a
        # round of page faults on CPU: float32 add 14 ms -> 4 ms at (2, 1024, 60, 60).
        out += shortcut
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Standard block output ``relu(forward_pre_activation(x))``."""
        # Not in place: callers may hold on to the pre-activation tensor.
        return F.relu(self.forward_pre_activation(x))


class BasicBlock(nn.Module):
    """ResNet-18-style block: two 3x3 convs plus a shortcut (used by the small ``resnet_toy``).

    The stride sits on ``conv1``; in dilated stages both 3x3 convs are dilated so the receptive
    field grows as in the bottleneck version.
    """

    expansion: ClassVar[int] = 1
    CONV_BN_PAIRS: ClassVar[tuple[tuple[str, str], ...]] = (("conv1", "bn1"), ("conv2", "bn2"))

    def __init__(
        self,
        inplanes: int,
        planes: int,
        stride: int = 1,
        dilation: int = 1,
        downsample: nn.Module | None = None,
    ) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(
            inplanes, planes, 3, stride=stride, padding=dilation, dilation=dilation, bias=False
        )
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=dilation, dilation=dilation, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def forward_pre_activation(self, x: Tensor) -> Tensor:
        """Residual sum before the final ReLU: (B, C_in, H, W) -> (B, planes, H/s, W/s)."""
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        out += shortcut  # in place, as in Bottleneck
        return out

    def forward(self, x: Tensor) -> Tensor:
        """Standard block output ``relu(forward_pre_activation(x))``."""
        return F.relu(self.forward_pre_activation(x))


def deep_stem(widths: tuple[int, int, int]) -> nn.Sequential:
    """PSPNet's deep stem: three 3x3 conv-BN-ReLU (first with stride 2) and a 3x3/2 max-pool.

    (B, 3, H, W) -> (B, widths[2], ceil(ceil(H/2)/2), ...); e.g. 473 -> 237 -> 119.
    """
    c1, c2, c3 = widths
    return nn.Sequential(
        nn.Conv2d(3, c1, 3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(c1),
        nn.ReLU(inplace=True),
        nn.Conv2d(c1, c2, 3, padding=1, bias=False),
        nn.BatchNorm2d(c2),
        nn.ReLU(inplace=True),
        nn.Conv2d(c2, c3, 3, padding=1, bias=False),
        nn.BatchNorm2d(c3),
        nn.ReLU(inplace=True),
        nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
    )


class ResNetBackbone(Backbone):
    """Deep-stem ResNet with output stride 8 (spec §1.1).

    Args:
        name: the ``build_backbone`` name.
        block: ``Bottleneck`` (ResNet-50/101) or ``BasicBlock`` (``resnet_toy``).
        blocks: number of blocks per stage, e.g. ``(3, 4, 6, 3)``.
        stem_widths: output channels of the three stem convs, ``(64, 64, 128)`` for the authors.
        widths: ``planes`` per stage; a stage outputs ``planes * block.expansion`` channels.

    Feature maps at input 473: layer0..4 are 119, 119, 60, 60, 60 pixels wide.
    ``feats`` holds one map per block from layer1's last block on (R50: 1 + 4 + 6 + 3 = 14).
    """

    def __init__(
        self,
        name: str,
        block: type[Bottleneck] | type[BasicBlock],
        blocks: tuple[int, int, int, int],
        stem_widths: tuple[int, int, int] = (64, 64, 128),
        widths: tuple[int, int, int, int] = (64, 128, 256, 512),
    ) -> None:
        super().__init__()
        self.name = name
        self.blocks = tuple(blocks)
        self.layer0 = deep_stem(stem_widths)
        inplanes = stem_widths[2]
        for i, (n, planes, stride, dilation) in enumerate(
            zip(blocks, widths, STAGE_STRIDES, STAGE_DILATIONS), start=1
        ):
            stage, inplanes = _make_stage(block, inplanes, planes, n, stride, dilation)
            setattr(self, f"layer{i}", stage)
        self.channels = (stem_widths[2],) + tuple(w * block.expansion for w in widths)
        self.feat_groups = (blocks[1], blocks[2], blocks[3])
        self.num_feats = 1 + sum(blocks[1:])
        _init_weights(self)

    def forward(self, x: Tensor, stages: int = 5) -> BackboneOutput:
        """(B, 3, H, W) -> ``BackboneOutput`` with 5 stage outputs and ``num_feats`` block maps.

        ``stages < 5`` stops after ``layer{stages - 1}`` (the evaluation runs the support's
        layer4 on part of the image only, :mod:`msanet_lib.model.support_region`).
        """
        feat = self.layer0(x)
        layers = [feat]
        feats: list[Tensor] = []
        for stage_index in range(1, stages):
            stage = getattr(self, f"layer{stage_index}")
            for block_index, block in enumerate(stage):
                pre = block.forward_pre_activation(feat)
                # From layer1's last block on, every pre-activation map is a similarity level.
                if stage_index > 1 or block_index == len(stage) - 1:
                    feats.append(pre)
                feat = F.relu(pre)
            layers.append(feat)
        return BackboneOutput(layers, feats)


def _make_stage(
    block: type[Bottleneck] | type[BasicBlock],
    inplanes: int,
    planes: int,
    n_blocks: int,
    stride: int,
    dilation: int,
) -> tuple[nn.Sequential, int]:
    """One ResNet stage; returns it and its output channels."""
    out_channels = planes * block.expansion
    downsample = None
    if stride != 1 or inplanes != out_channels:
        downsample = nn.Sequential(
            nn.Conv2d(inplanes, out_channels, kernel_size=1, stride=stride, bias=False),
            nn.BatchNorm2d(out_channels),
        )
    layers = [block(inplanes, planes, stride, dilation, downsample)]
    layers += [block(out_channels, planes, 1, dilation) for _ in range(1, n_blocks)]
    return nn.Sequential(*layers), out_channels


def _init_weights(model: nn.Module) -> None:
    """The authors' init: Kaiming-normal (fan_out, ReLU) convs, BN weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def resnet50() -> ResNetBackbone:
    """Deep-stem dilated ResNet-50: channels 128, 256, 512, 1024, 2048; 14 block feats."""
    return ResNetBackbone("resnet50", Bottleneck, (3, 4, 6, 3))


def resnet101() -> ResNetBackbone:
    """Deep-stem dilated ResNet-101: channels 128, 256, 512, 1024, 2048; 31 block feats."""
    return ResNetBackbone("resnet101", Bottleneck, (3, 4, 23, 3))


def resnet_toy() -> ResNetBackbone:
    """A narrow ResNet-18-layout backbone (~0.7M parameters) trained from scratch on CPU.

    Same deep stem, output stride 8 and per-block features as the big ResNets, so every code
    path of MSANet runs unchanged. Channels 32, 16, 32, 64, 128; 7 block feats, groups (2, 2, 2).
    """
    return ResNetBackbone(
        "resnet_toy",
        BasicBlock,
        (2, 2, 2, 2),
        stem_widths=(16, 16, 32),
        widths=(16, 32, 64, 128),
    )
