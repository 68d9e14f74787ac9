"""Worked solutions of notebook 06 · Feature enrichment."""

from __future__ import annotations

import torch
from torch import nn


def merge_channels(reduce_dim: int, hyper_dim: int, use_multi_similarity: bool,
                   use_attention: bool) -> int:
    """query + prototype (reduce_dim each) + prior (1) [+ hyper] [+ gam (reduce_dim)]."""
    width = 2 * reduce_dim + 1
    if use_multi_similarity:
        width += hyper_dim
    if use_attention:
        width += reduce_dim
    return width


def useful_taps(size: int, dilation: int) -> int:
    """Max over output cells of the 3x3 taps (offsets -d, 0, +d per axis) inside the map."""
    per_axis = max(sum(0 <= c + dilation * u < size for u in (-1, 0, 1)) for c in range(size))
    return per_axis * per_axis


def decode(net: nn.Module, merge_feat: torch.Tensor) -> torch.Tensor:
    """merge_feat (B, C, h, w) -> meta logits (B, 2, h, w) with the model's own modules."""
    q = net.res1_meta(net.ASPP_meta(net.init_merge(merge_feat)))
    q = net.res2_meta(q) + q
    return net.cls_meta(q)
