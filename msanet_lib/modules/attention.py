"""Guided attention module (GAM, the authors' ``Attention``; spec section 1.4 step 9).

The support feature map is reweighted channel by channel by a gate computed from the masked
support features:

    a = (1 / hw) * sum_{x,y} F_s(x, y) M_s(x, y)          (average over ALL pixels, not the mask)
    g = sigmoid(Dropout(W_2 ReLU(W_1 a + b_1) + b_2))     (W_1, W_2: 1x1 convs, C -> C)
    V_a = g * F_s                                         (the unmasked map, reweighted)

The mask is resized with legacy ``nearest`` interpolation, as in the authors' code. MSANet
averages V_a over the shots and concatenates it to the query features position by position.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class Attention(nn.Module):
    """GAM. State-dict names ``gate.0.*`` and ``gate.2.*`` as the authors.

    Args:
        channels: feature channels C (256 in MSANet).
        drop_rate: element-wise dropout before the sigmoid (active only in training).
    """

    def __init__(self, channels: int = 256, drop_rate: float = 0.5) -> None:
        super().__init__()
        self.gate = nn.Sequential(
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.ReLU(),
            nn.Conv2d(channels, channels, kernel_size=1),
            nn.Dropout(p=drop_rate),
            nn.Sigmoid(),
        )

    def forward(self, supp_feat: Tensor, supp_mask: Tensor) -> Tensor:
        """Reweight support features.

        Args:
            supp_feat: (N, C, h, w) support features (after ``down_supp``).
            supp_mask: (N, 1, H, W) float binary mask at any resolution.

        Returns:
            (N, C, h, w) gated support features V_a.
        """
        mask = F.interpolate(supp_mask, size=supp_feat.shape[-2:], mode="nearest")
        pooled = (supp_feat * mask).mean(dim=(2, 3), keepdim=True)
        return self.gate(pooled) * supp_feat
