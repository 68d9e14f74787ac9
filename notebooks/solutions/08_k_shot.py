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


def bam_kshot_experiment() -> dict:
    """--set overrides of a 5-shot stage-2 run with BAM's order and the two-layer kshot_rw."""
    return {"shots": 5, "model.kshot_order": "bam", "model.kshot_trans_dim": 2}


# ---- typical wrong answers: every check must reject each of them ---------------------------

def _rank_is_sort_index(est_total: torch.Tensor) -> torch.Tensor:
    """Returns idx1 (the shots in rank order) instead of each shot's rank."""
    return est_total.argsort(dim=1)


def _prior_plain_mean(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Ignores the shot weights: a plain mean over the shots."""
    return priors.mean(dim=1)


def _prior_weighted_mean(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Weights the shots but then divides by K again (mean instead of sum)."""
    return (weights[..., None] * priors).mean(dim=1)


def _bam_gather_with_idx(est_total: torch.Tensor, rw: nn.Module) -> torch.Tensor:
    """Gathers with the sorting permutation idx1 instead of its inverse (the ranks)."""
    sorted_val, idx = est_total.sort(dim=1)
    return rw(sorted_val).gather(1, idx).softmax(dim=1)


def _bam_authors_identity(est_total: torch.Tensor, rw: nn.Module) -> torch.Tensor:
    """Copies the authors' identity gather: the rank scores stay in slot order."""
    sorted_val, _ = est_total.sort(dim=1)
    return rw(sorted_val).softmax(dim=1)


def _experiment_one_shot(*_: object) -> dict:
    """Sets BAM's order but keeps one shot: a 1-shot model has no kshot_rw to order."""
    return {"model.kshot_order": "bam"}


def _experiment_uniform(*_: object) -> dict:
    """Uses kshot_trans_dim 0: uniform 1/K weights, so the order can never matter."""
    return {"shots": 5, "model.kshot_order": "bam", "model.kshot_trans_dim": 0}


def _experiment_authors(*_: object) -> dict:
    """Five shots, but the default (authors') order."""
    return {"shots": 5}


MISTAKES = {
    "rank_of_each_shot": [_rank_is_sort_index],
    "weighted_prior": [_prior_plain_mean, _prior_weighted_mean],
    "bam_shot_weights": [_bam_gather_with_idx, _bam_authors_identity],
    "bam_kshot_experiment": [_experiment_one_shot, _experiment_uniform, _experiment_authors],
}
