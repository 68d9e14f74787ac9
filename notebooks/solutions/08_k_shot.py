"""Worked solutions of notebook 08 · K-shot episodes."""

from __future__ import annotations

import torch
from torch import nn


def rank_of_each_shot(est_total: torch.Tensor) -> torch.Tensor:
    """(B, K, 1, 1) psi -> (B, K, 1, 1) rank of each shot (0 = smallest), i.e. idx2."""
    return est_total.argsort(dim=1).argsort(dim=1)


def bam_shot_weights(est_total: torch.Tensor, rw: nn.Module) -> torch.Tensor:
    """Sort psi, score the ranks with ``rw``, give each shot its rank's score, softmax."""
    sorted_val, idx = est_total.sort(dim=1)
    scores = rw(sorted_val)
    return scores.gather(1, idx.argsort(dim=1)).softmax(dim=1)


def weighted_prior(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, 1, h, w) per-shot priors, (B, K, 1, 1) weights -> (B, 1, h, w)."""
    return (weights[..., None] * priors).sum(dim=1)
