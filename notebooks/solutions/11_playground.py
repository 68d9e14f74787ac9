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


def no_attention_experiment() -> dict:
    """--set overrides of a stage-2 run without the gated attention (everything else kept)."""
    return {"model.use_attention": False}


# ---- typical wrong answers: every check must reject each of them ---------------------------

def _brush_pixel_corners(h: int, w: int, points: np.ndarray, radius: float) -> np.ndarray:
    """Measures from the pixel's corner (x, y) instead of its centre (x + 0.5, y + 0.5)."""
    yy, xx = np.mgrid[0:h, 0:w]
    dx = xx.ravel()[:, None] - points[None, :, 0]
    dy = yy.ravel()[:, None] - points[None, :, 1]
    return ((dx**2 + dy**2) <= radius**2).any(axis=1).reshape(h, w)


def _brush_swapped_xy(h: int, w: int, points: np.ndarray, radius: float) -> np.ndarray:
    """Reads the mouse points as (row, column) instead of (x, y)."""
    return brush_mask(h, w, points[:, ::-1], radius)


def _threshold_mean_of_ious(prob: torch.Tensor, truths: torch.Tensor, thresholds: np.ndarray
                            ) -> tuple[float, float]:
    """Averages per-query IoUs instead of pooling intersections and unions."""
    valid = truths != IGNORE
    fg = (truths == 1) & valid
    best = (float(thresholds[0]), -1.0)
    for t in thresholds:
        pred = (prob > float(t)) & valid
        inter = (pred & fg).flatten(1).sum(1).double()
        union = (pred | fg).flatten(1).sum(1).double().clamp_min(1)
        score = float((inter / union).mean())
        if score > best[1]:
            best = (float(t), score)
    return best


def _threshold_keeps_255(prob: torch.Tensor, truths: torch.Tensor, thresholds: np.ndarray
                         ) -> tuple[float, float]:
    """Counts the ignored (255) pixels as background."""
    fg = truths == 1
    best = (float(thresholds[0]), -1.0)
    for t in thresholds:
        pred = prob > float(t)
        union = (pred | fg).sum().item()
        score = (pred & fg).sum().item() / union if union else 0.0
        if score > best[1]:
            best = (float(t), score)
    return best


def _experiment_top_level_key() -> dict:
    """Puts the switch outside the model section (the config loader rejects the key)."""
    return {"use_attention": False}


def _experiment_wrong_switch() -> dict:
    """Switches off the multi-similarity instead of the attention."""
    return {"model.use_multi_similarity": False}


def _experiment_two_changes() -> dict:
    """Removes the base learner too: two changes at once, the comparison says nothing."""
    return {"model.use_attention": False, "model.use_base_learner": False}


MISTAKES = {
    "brush_mask": [_brush_pixel_corners, _brush_swapped_xy],
    "best_threshold": [_threshold_mean_of_ious, _threshold_keeps_255],
    "no_attention_experiment": [_experiment_top_level_key, _experiment_wrong_switch,
                                _experiment_two_changes],
}
