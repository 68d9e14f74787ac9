"""Worked solutions of notebook 11 · Playground."""

from __future__ import annotations

import numpy as np
import torch

IGNORE = 255


def brush_mask(h: int, w: int, points: np.ndarray, radius: float) -> np.ndarray:
    """(h, w) bool: pixel centres within ``radius`` of any of the (N, 2) x, y ``points``."""
    yy, xx = np.mgrid[0:h, 0:w]
    dx = (xx.ravel() + 0.5)[:, None] - points[None, :, 0]
    dy = (yy.ravel() + 0.5)[:, None] - points[None, :, 1]
    return ((dx**2 + dy**2) <= radius**2).any(axis=1).reshape(h, w)


def best_threshold(prob: torch.Tensor, truths: torch.Tensor, thresholds: np.ndarray
                   ) -> tuple[float, float]:
    """Threshold with the highest pooled foreground IoU over all queries, and that IoU."""
    valid = truths != IGNORE
    fg = (truths == 1) & valid
    best = (float(thresholds[0]), -1.0)
    for t in thresholds:
        pred = (prob > float(t)) & valid
        union = (pred | fg).sum().item()
        score = (pred & fg).sum().item() / union if union else 0.0
        if score > best[1]:
            best = (float(t), score)
    return best
