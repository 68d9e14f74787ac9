"""Worked solutions of notebook 07 · The base learner and the ensemble."""

from __future__ import annotations

import torch


def base_map(base_prob: torch.Tensor, exclude: torch.Tensor | None = None) -> torch.Tensor:
    """(B, C_b, h, w) probabilities, optional (B,) channels to leave out -> (B, 1, h, w)."""
    keep = torch.ones(base_prob.shape[:2], dtype=base_prob.dtype, device=base_prob.device)
    keep[:, 0] = 0  # background is not a base class
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


def min_base_weight(p_bg: float, p_fg: float, b: float) -> float:
    """Smallest w >= 0 such that p_bg + w * b >= p_fg (b > 0)."""
    return max(0.0, (p_fg - p_bg) / b)


def ensemble_cost(scores: dict[str, float]) -> tuple[float, float, float]:
    """(best fixed threshold, final - (meta > t*), final - (meta > 0.5)) from the scores of
    ``ensemble_vs_threshold`` (notebook 07); the thresholds are read from the keys."""
    fixed = {float(k.split("> ")[1]): v for k, v in scores.items()
             if k.startswith("meta > ") and k != "meta > t*"}
    best = max(fixed, key=fixed.__getitem__)
    return best, scores["final_out"] - scores["meta > t*"], scores["final_out"] - fixed[0.5]
