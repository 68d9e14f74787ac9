"""Worked solutions of notebook 03 · The prior mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def minmax_normalise(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Rescale each row of (B, N) to [0, 1]; a constant row becomes zeros."""
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    return (x - lo) / (hi - lo + eps)


def mean_prior(query_feat: torch.Tensor, supp_feat: torch.Tensor,
               supp_mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Prior with the mask-weighted mean of the cosines instead of their max: (B, 1, h, w)."""
    b, _, c, h, w = supp_feat.shape
    mask = F.interpolate(supp_mask[:, :1], size=(h, w), mode="bilinear", align_corners=True)
    weights = mask.reshape(b, h * w, 1)                                   # (B, HWs, 1)
    s = (supp_feat[:, 0] * mask).reshape(b, c, h * w).transpose(1, 2)     # (B, HWs, C)
    q = query_feat.reshape(b, c, h * w)                                   # (B, C, HWq)
    cos = s.bmm(q) / (s.norm(dim=2, keepdim=True) * q.norm(dim=1, keepdim=True) + eps)
    mean = (cos * weights).sum(dim=1) / (weights.sum(dim=1) + eps)        # (B, HWq)
    return minmax_normalise(mean, eps).reshape(b, 1, h, w)


def average_prior(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) per-shot priors, (B, K) weights -> (B, h, w) weighted sum."""
    return (priors * weights[:, :, None, None]).sum(dim=1)
