"""Worked solutions of notebook 00 · The few-shot segmentation task."""

from __future__ import annotations

import math

import torch

IGNORE = 255


def episode_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Foreground IoU of one (H, W) episode, 255 pixels ignored; NaN for an empty union."""
    valid = target != IGNORE
    p = (pred == 1) & valid
    t = (target == 1) & valid
    union = int((p | t).sum())
    return int((p & t).sum()) / union if union else math.nan


def accumulated_miou(preds: torch.Tensor, targets: torch.Tensor, class_index: torch.Tensor,
                     n_classes: int) -> float:
    """Sum foreground I and U per class over the episodes, divide, average over all classes.

    A class that never appeared scores 0, as in the authors' test.py (I / (U + 1e-10)).
    """
    valid = targets != IGNORE
    p = (preds == 1) & valid
    t = (targets == 1) & valid
    inter = (p & t).sum(dim=(1, 2))
    union = (p | t).sum(dim=(1, 2))
    class_i = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, inter)
    class_u = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, union)
    return (class_i.double() / class_u.clamp_min(1)).mean().item()


def all_background_fb_iou(targets: torch.Tensor) -> float:
    """FB-IoU of the all-zero prediction: foreground IoU 0, background IoU = share of
    background among the valid target pixels (pooled over all episodes)."""
    valid = targets != IGNORE
    background = ((targets == 0) & valid).sum().item()
    return 0.5 * (background / valid.sum().item() + 0.0)
