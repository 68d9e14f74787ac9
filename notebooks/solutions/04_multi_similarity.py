"""Worked solutions of notebook 04 · The multi-similarity module, and the typical mistakes
(``MISTAKES``) that each exercise's check must reject."""

from __future__ import annotations

import torch

EPS = 1e-5


# ----------------------------------------------------------------------------- warm-up
def similarity_macs(grid: int, n_selected: int, channels: list[int]) -> int:
    """Multiply-adds of MSANet's similarity: per block (grid^2 query pixels) x N x C."""
    hw = grid * grid
    return sum(hw * n_selected * c for c in channels)


def _macs_side_not_area(grid: int, n_selected: int, channels: list[int]) -> int:
    """Uses the grid's side instead of its number of pixels (grid instead of grid^2)."""
    return sum(grid * n_selected * c for c in channels)


def _macs_dense(grid: int, n_selected: int, channels: list[int]) -> int:
    """Counts the dense hw x hw product, ignoring that only N support pixels are kept."""
    hw = grid * grid
    return sum(hw * hw * c for c in channels)


def _macs_no_channels(grid: int, n_selected: int, channels: list[int]) -> int:
    """Counts cosines, not multiply-adds: forgets that each cosine is a length-C dot product."""
    return len(channels) * grid * grid * n_selected


# ----------------------------------------------------------------------------- variant
def dense_block_map(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """(C, hw_q), (C, hw_s), (hw_s,) soft mask -> (hw_q,) mask-weighted mean clamped cosine."""
    q_hat = q / (q.norm(dim=0, keepdim=True) + EPS)
    s_hat = s / (s.norm(dim=0, keepdim=True) + EPS)
    cos = (q_hat.T @ s_hat).clamp(min=0)  # (hw_q, hw_s)
    return (cos * m[None]).sum(dim=1) / m.sum().clamp(min=EPS)


def _dense_no_clamp(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Forgets to clamp negative cosines at 0, so opposite pixels cancel similar ones."""
    q_hat = q / (q.norm(dim=0, keepdim=True) + EPS)
    s_hat = s / (s.norm(dim=0, keepdim=True) + EPS)
    return (q_hat.T @ s_hat * m[None]).sum(dim=1) / m.sum().clamp(min=EPS)


def _dense_divides_by_pixels(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Divides by the number of support pixels instead of the total mask weight."""
    q_hat = q / (q.norm(dim=0, keepdim=True) + EPS)
    s_hat = s / (s.norm(dim=0, keepdim=True) + EPS)
    return ((q_hat.T @ s_hat).clamp(min=0) * m[None]).sum(dim=1) / s.shape[1]


def _dense_mask_on_features(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Weights the support features by the mask before normalising (the weight cancels),
    i.e. an unweighted mean over the positive pixels."""
    q_hat = q / (q.norm(dim=0, keepdim=True) + EPS)
    sm = s * m[None]
    s_hat = sm / (sm.norm(dim=0, keepdim=True) + EPS)
    keep = (m > 0).to(q.dtype)
    return ((q_hat.T @ s_hat).clamp(min=0) * keep[None]).sum(dim=1) / keep.sum().clamp(min=1)


# ----------------------------------------------------------------------------- experiment
def narrow_hyper() -> dict:
    """`msanet-train --set` overrides: hyper_final with 8 output channels, nothing else."""
    return {"model.hyper_dim": 8}


def _narrow_without_section() -> dict:
    """Leaves out the config section: there is no top-level key `hyper_dim`."""
    return {"hyper_dim": 8}


def _narrow_wrong_knob() -> dict:
    """Narrows the whole meta learner (reduce_dim) instead of hyper_final."""
    return {"model.reduce_dim": 8}


def _narrow_default() -> dict:
    """Writes the default width back: nothing changes."""
    return {"model.hyper_dim": 64}


MISTAKES = {
    "similarity_macs": [_macs_side_not_area, _macs_dense, _macs_no_channels],
    "dense_block_map": [_dense_no_clamp, _dense_divides_by_pixels, _dense_mask_on_features],
    "narrow_hyper": [_narrow_without_section, _narrow_wrong_knob, _narrow_default],
}
