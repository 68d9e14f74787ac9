"""Worked solutions of notebook 02 · Masked average pooling and prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

EPS = 5e-4


def _map(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w), (N, 1, h, w) -> (N, C, 1, 1) masked average (the authors' Weighted_GAP)."""
    return (feat * mask).sum(dim=(2, 3), keepdim=True) / (mask.sum(dim=(2, 3), keepdim=True) + EPS)


def kshot_prototype(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, K, C, h, w) features, (B, K, 1, h, w) masks -> (B, C, 1, 1) mean of K prototypes."""
    b, k, c, h, w = feat.shape
    protos = _map(feat.reshape(b * k, c, h, w), mask.reshape(b * k, 1, h, w))
    return protos.reshape(b, k, c, 1, 1).mean(dim=1)


def panet_predict(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                  supp_mask: torch.Tensor) -> torch.Tensor:
    """Nearest of the foreground and background prototypes by cosine: (N, h, w) 0/1."""
    fg = _map(supp_feat, supp_mask)
    bg = _map(supp_feat, 1 - supp_mask)
    sims = torch.stack([F.cosine_similarity(query_feat, p, dim=1, eps=1e-7) for p in (bg, fg)],
                       dim=1)
    return sims.argmax(dim=1)


def area_resize(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) 0/1/255 label -> (N, 1, h, w) share of foreground pixels in each cell."""
    fg = (mask == 1).float().unsqueeze(1)
    return F.adaptive_avg_pool2d(fg, size)
