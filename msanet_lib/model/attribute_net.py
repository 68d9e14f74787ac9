"""AttributeNet, the stage-0 network: a backbone with dense attribute heads (the toy "ImageNet").

Stage 0 gives the toy backbone generic visual features before stage 1, as ImageNet
classification gives the authors' ResNets theirs. Its task is dense and label-rich: for every
pixel of a generated scene, which silhouette, which surface pattern and which hue it belongs
to (:mod:`msanet_lib.data.toy_pretrain`). Only ``layer0 .. layer4`` are kept afterwards; the
head is thrown away, like the ImageNet classifier ``fc``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import build_backbone, share_backbone_layers
from msanet_lib.runtime import IGNORE_LABEL


class AttributeNet(nn.Module):
    """Backbone ``layer0 .. layer4`` + one small head predicting every attribute per pixel.

    Args:
        backbone: a ``build_backbone`` name (``resnet_toy``).
        num_values: classes per attribute, background included (shape, pattern, hue: 6 each).
        hidden: width of the head's 3x3 conv.

    ``forward(x)``: (B, 3, H, W) -> list of logits (B, V_a, H, W) per attribute, at the input
    size (bilinear, align_corners=True, as PSPNet).
    """

    def __init__(self, backbone: str = "resnet_toy", num_values: Sequence[int] = (6, 6, 6),
                 hidden: int = 64) -> None:
        super().__init__()
        net = build_backbone(backbone)
        share_backbone_layers(self, net)
        self.backbone_name = net.name
        self.num_values = tuple(int(v) for v in num_values)
        self.head = nn.Sequential(
            nn.Conv2d(net.channels[4], hidden, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(hidden),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, sum(self.num_values), kernel_size=1),
        )

    def encoder_modules(self) -> list[nn.Module]:
        return [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]

    def forward(self, x: Tensor) -> list[Tensor]:
        feat = x
        for stage in self.encoder_modules():
            feat = stage(feat)
        logits = F.interpolate(self.head(feat), size=x.shape[-2:], mode="bilinear",
                               align_corners=True)
        return list(torch.split(logits, self.num_values, dim=1))

    @staticmethod
    def loss(logits: Sequence[Tensor], targets: Tensor, background_weight: float = 1.0) -> Tensor:
        r"""Mean over attributes of the class-weighted pixel cross-entropy.

        ``targets`` (B, A, H, W) int64, 255 = ignore. Background pixels weigh
        ``background_weight`` (about 87 % of the labelled pixels are background: at weight 1
        the network first learns to predict background everywhere and barely moves from there;
        0.1 lets the attributes be learnt from the first iterations). Per attribute:
        :math:`\sum_i w_i \, \mathrm{CE}_i / \sum_i w_i` over labelled pixels ``i``.
        """
        parts = []
        for a, lg in enumerate(logits):
            target = targets[:, a]
            weight = torch.ones(lg.shape[1], device=lg.device, dtype=lg.dtype)
            weight[0] = background_weight
            ce = F.cross_entropy(lg, target, weight=weight, ignore_index=IGNORE_LABEL,
                                 reduction="sum")
            valid = target != IGNORE_LABEL
            total = torch.where(target[valid] == 0, background_weight, 1.0).sum()
            parts.append(ce / total.clamp_min(1e-6))
        return torch.stack(parts).mean()


__all__ = ["AttributeNet"]
