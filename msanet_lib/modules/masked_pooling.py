"""Masked average pooling: the support prototype (the authors' ``Weighted_GAP``).

Paper (MSANet, following PFENet/BAM): the prototype of a support image is the mean of its
feature vectors over the foreground mask,

    v_s = sum_{x,y} F_s(x, y) * M_s(x, y) / (sum_{x,y} M_s(x, y) + eps),   eps = 5e-4.

The epsilon keeps an empty mask finite: the prototype is then exactly zero.
"""

from __future__ import annotations

from torch import Tensor

MAP_EPS = 5e-4


def masked_average_pooling(feat: Tensor, mask: Tensor, eps: float = MAP_EPS) -> Tensor:
    """Average ``feat`` over the (soft) foreground ``mask``.

    Args:
        feat: (N, C, h, w) features.
        mask: (N, 1, h, w) soft mask in [0, 1], already at the feature size.
        eps: added to the mask area so that an empty mask gives a zero prototype.

    Returns:
        (N, C, 1, 1) prototype.
    """
    area = mask.sum(dim=(2, 3), keepdim=True) + eps
    return (feat * mask).sum(dim=(2, 3), keepdim=True) / area
