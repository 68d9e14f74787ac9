"""Worked solutions of notebook 07 · The base learner and the ensemble, and the typical
mistakes (``MISTAKES``) that each exercise's check must reject."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


# ----------------------------------------------------------------------------- warm-ups
def base_map(base_prob: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C_b, h, w) probabilities, optional (B,) channels to leave out -> (B, 1, h, w)."""
    keep = torch.ones(base_prob.shape[:2], dtype=base_prob.dtype, device=base_prob.device)
    keep[:, 0] = 0  # background is not a base class
    if exclude is not None:
        keep[torch.arange(base_prob.shape[0]), exclude] = 0
    return (base_prob * keep[:, :, None, None]).sum(dim=1, keepdim=True)


def _base_map_one_minus_bg(base_prob: torch.Tensor,
                           exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Uses 1 - p(background): right in evaluation, but never leaves the episode's class out."""
    return 1 - base_prob[:, :1]


def _base_map_keeps_background(base_prob: torch.Tensor,
                               exclude: torch.Tensor | None = None) -> torch.Tensor:
    """Sums every channel, background included (always 1 without an exclusion)."""
    keep = torch.ones(base_prob.shape[:2], dtype=base_prob.dtype)
    if exclude is not None:
        keep[torch.arange(base_prob.shape[0]), exclude] = 0
    return (base_prob * keep[:, :, None, None]).sum(dim=1, keepdim=True)


def gram_distance(q_low: torch.Tensor, s_low: torch.Tensor) -> torch.Tensor:
    """(C, h, w), (C, h, w) -> ||G_q - G_s||_F / C with cosine Gram matrices."""

    def gram(f: torch.Tensor) -> torch.Tensor:
        f = f.flatten(1)
        norm = f.norm(dim=1)
        return f @ f.T / (norm[:, None] * norm[None, :] + 1e-7)

    return (gram(q_low) - gram(s_low)).norm() / q_low.shape[0]


def _gram_divides_by_c_squared(q_low: torch.Tensor, s_low: torch.Tensor) -> torch.Tensor:
    """Divides by C^2 (the number of entries) instead of ||ones||_F = C."""
    return gram_distance(q_low, s_low) / q_low.shape[0]


def _gram_not_cosine(q_low: torch.Tensor, s_low: torch.Tensor) -> torch.Tensor:
    """Uses the plain Gram matrix F F^T, without normalising by the channel norms."""
    q, s = q_low.flatten(1), s_low.flatten(1)
    return (q @ q.T - s @ s.T).norm() / q_low.shape[0]


def min_base_weight(p_bg: float, p_fg: float, b: float) -> float:
    """Smallest w >= 0 such that p_bg + w * b >= p_fg (b > 0)."""
    return max(0.0, (p_fg - p_bg) / b)


def _weight_not_clamped(p_bg: float, p_fg: float, b: float) -> float:
    """Returns a negative weight for a pixel that is already background."""
    return (p_fg - p_bg) / b


def _weight_ignores_b(p_bg: float, p_fg: float, b: float) -> float:
    """Forgets to divide by the base map value b."""
    return max(0.0, p_fg - p_bg)


def ensemble_cost(scores: dict[str, float]) -> tuple[float, float, float]:
    """(best fixed threshold, final - (meta > t*), final - (meta > 0.5)) from the scores of
    ``ensemble_vs_threshold`` (notebook 07); the thresholds are read from the keys."""
    fixed = {float(k.split("> ")[1]): v for k, v in scores.items()
             if k.startswith("meta > ") and k != "meta > t*"}
    best = max(fixed, key=fixed.__getitem__)
    return best, scores["final_out"] - scores["meta > t*"], scores["final_out"] - fixed[0.5]


def _cost_reversed(scores: dict[str, float]) -> tuple[float, float, float]:
    """Subtracts the wrong way round (meta - final), flipping the sign of the cost."""
    best, a, b = ensemble_cost(scores)
    return best, -a, -b


def _cost_worst_threshold(scores: dict[str, float]) -> tuple[float, float, float]:
    """Takes the threshold with the lowest score (min instead of max)."""
    fixed = {float(k.split("> ")[1]): v for k, v in scores.items()
             if k.startswith("meta > ") and k != "meta > t*"}
    _, a, b = ensemble_cost(scores)
    return min(fixed, key=fixed.__getitem__), a, b


# ----------------------------------------------------------------------------- variant
class PositiveMerge(nn.Module):
    """2 -> 1 merge with weights softplus(r) >= 0, initialised to about [1, 0]."""

    def __init__(self) -> None:
        super().__init__()
        self.raw = nn.Parameter(torch.tensor([math.log(math.e - 1), -8.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = F.softplus(self.raw)
        return w[0] * x[:, :1] + w[1] * x[:, 1:2]


def positive_merge() -> nn.Module:
    """A positive-constrained cls_merge (softplus-parametrised weights)."""
    return PositiveMerge()


class _ClampedMerge(nn.Module):
    """Clamps the weights at 0 in the forward: no gradient once a weight is negative."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.clamp(min=0)
        return w[0] * x[:, :1] + w[1] * x[:, 1:2]


class _AbsMerge(nn.Module):
    """Uses |w|: the base weight starts at 0, where |w| has no gradient, so it never moves."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.tensor([1.0, 0.0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.weight.abs()
        return w[0] * x[:, :1] + w[1] * x[:, 1:2]


def _merge_clamped() -> nn.Module:
    """Clamps the weights at 0 in the forward: no gradient once a weight is negative."""
    return _ClampedMerge()


def _merge_abs() -> nn.Module:
    """Uses |w|: the base weight starts at 0, where |w| has no gradient."""
    return _AbsMerge()


def _merge_unconstrained() -> nn.Module:
    """A plain 1x1 conv initialised to [1, 0]: training can make the base weight negative."""
    from msanet_lib.modules.ensemble import merge_conv

    return merge_conv()


# ----------------------------------------------------------------------------- experiment
def no_ensemble() -> dict:
    """`msanet-train --set` overrides: no base learner and no cls_merge, nothing else."""
    return {"model.use_base_learner": False}


def _no_ensemble_without_section() -> dict:
    """Leaves out the config section: there is no top-level key `use_base_learner`."""
    return {"use_base_learner": False}


def _no_ensemble_wrong_switch() -> dict:
    """Switches off the attention module instead of the ensemble."""
    return {"model.use_attention": False}


def _no_ensemble_default() -> dict:
    """Writes the default back: the ensemble stays."""
    return {"model.use_base_learner": True}


MISTAKES = {
    "base_map": [_base_map_one_minus_bg, _base_map_keeps_background],
    "gram_distance": [_gram_divides_by_c_squared, _gram_not_cosine],
    "min_base_weight": [_weight_not_clamped, _weight_ignores_b],
    "ensemble_cost": [_cost_reversed, _cost_worst_threshold],
    "positive_merge": [_merge_clamped, _merge_abs, _merge_unconstrained],
    "no_ensemble": [_no_ensemble_without_section, _no_ensemble_wrong_switch,
                    _no_ensemble_default],
}
