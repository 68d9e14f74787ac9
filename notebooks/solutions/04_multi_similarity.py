"""Worked solutions of notebook 04 · The multi-similarity module."""

from __future__ import annotations

import torch

EPS = 1e-5


def select_pixels(mask: torch.Tensor) -> torch.Tensor:
    """(N, hw) soft masks -> (N, hw) bool: positive values at or above their mean."""
    positive = mask > 0
    count = positive.sum(dim=1, keepdim=True).clamp(min=1)
    mean_pos = (mask * positive).sum(dim=1, keepdim=True) / count
    return positive & (mask >= mean_pos)


def mean_clamped_cosine(q: torch.Tensor, s: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """(C, hw_q), (C, hw_s) masked support, (hw_s,) bool -> (hw_q,) mean clamped cosine."""
    q_hat = q / (q.norm(dim=0, keepdim=True) + EPS)
    s_sel = s[:, keep]
    s_hat = s_sel / (s_sel.norm(dim=0, keepdim=True) + EPS)
    cos = (q_hat.T @ s_hat).clamp(min=0)  # (hw_q, N)
    return cos.sum(dim=1) / max(int(keep.sum()), 1)


def correlation_floats(h: int, w: int, n_selected: int, n_blocks: int) -> tuple[int, int]:
    """(floats of a dense 4D correlation, floats of MSANet's hw x N columns), over all blocks."""
    hw = h * w
    return n_blocks * hw * hw, n_blocks * hw * n_selected
