"""Worked solutions of notebook 05 · The attention module (GAM)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def masked_gap_all_pixels(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w), (N, 1, H, W) -> (N, C, 1, 1): sum of F * M over all h * w pixels."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    return (feat * m).mean(dim=(2, 3), keepdim=True)


def gate_input_normalised(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w), (N, 1, H, W) -> (N, C, 1, 1): average over the mask pixels only."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    area = m.sum(dim=(2, 3), keepdim=True)
    return (feat * m).sum(dim=(2, 3), keepdim=True) / area.clamp(min=1)


def drop_gate(logits: torch.Tensor, keep: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Training-mode gate for a given dropout pattern: sigmoid(keep * logits / (1 - p))."""
    return torch.sigmoid(logits * keep.to(logits.dtype) / (1 - p))
