"""Atrous spatial pyramid pooling of the meta learner (``ASPP_meta``; spec section 1.8).

Five parallel branches on the merged features, concatenated in this order:
image-level pooling + 1x1 conv (``layer6_0``), 1x1 conv (``layer6_1``) and 3x3 convs with
dilation 6, 12, 18 (``layer6_2..4``). Every conv has a bias and a ReLU, no BatchNorm; conv
weights use Kaiming-normal initialisation (fan_in, gain sqrt(2)).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn


def _branch(channels: int, kernel_size: int, dilation: int = 1) -> nn.Sequential:
    padding = dilation if kernel_size == 3 else 0
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size, padding=padding, dilation=dilation, bias=True),
        nn.ReLU(),
    )


class ASPP(nn.Module):
    """(B, C, h, w) -> (B, 5C, h, w).

    Args:
        channels: input and per-branch output channels (256).
        rates: dilations of the three 3x3 branches.
    """

    def __init__(self, channels: int = 256, rates: tuple[int, int, int] = (6, 12, 18)) -> None:
        super().__init__()
        self.layer6_0 = _branch(channels, 1)
        self.layer6_1 = _branch(channels, 1)
        self.layer6_2 = _branch(channels, 3, rates[0])
        self.layer6_3 = _branch(channels, 3, rates[1])
        self.layer6_4 = _branch(channels, 3, rates[2])
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight)

    def forward(self, x: Tensor) -> Tensor:
        h, w = x.shape[-2:]
        pooled = self.layer6_0(x.mean(dim=(2, 3), keepdim=True)).expand(-1, -1, h, w)
        return torch.cat(
            [pooled, self.layer6_1(x), self.layer6_2(x), self.layer6_3(x), self.layer6_4(x)], dim=1
        )
