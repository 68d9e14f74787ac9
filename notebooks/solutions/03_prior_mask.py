"""Worked solutions of notebook 03 · The prior mask."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def minmax_normalise(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Rescale each row of (B, N) to [0, 1]; a constant row becomes zeros."""
    lo = x.amin(dim=1, keepdim=True)
    hi = x.amax(dim=1, keepdim=True)
    return (x - lo) / (hi - lo + eps)


def mean_prior(query_feat: torch.Tensor, supp_feat: torch.Tensor,
               supp_mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Prior with the mask-weighted mean of the cosines instead of their max: (B, 1, h, w)."""
    b, _, c, h, w = supp_feat.shape
    mask = F.interpolate(supp_mask[:, :1], size=(h, w), mode="bilinear", align_corners=True)
    weights = mask.reshape(b, h * w, 1)                                   # (B, HWs, 1)
    s = (supp_feat[:, 0] * mask).reshape(b, c, h * w).transpose(1, 2)     # (B, HWs, C)
    q = query_feat.reshape(b, c, h * w)                                   # (B, C, HWq)
    cos = s.bmm(q) / (s.norm(dim=2, keepdim=True) * q.norm(dim=1, keepdim=True) + eps)
    mean = (cos * weights).sum(dim=1) / (weights.sum(dim=1) + eps)        # (B, HWq)
    return minmax_normalise(mean, eps).reshape(b, 1, h, w)


def average_prior(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """(B, K, h, w) per-shot priors, (B, K) weights -> (B, h, w) weighted sum."""
    return (priors * weights[:, :, None, None]).sum(dim=1)


def pfenet_longer_overrides() -> list[str]:
    """The PFENet-like ablation row (prototype + prior into the meta learner), on the shipped
    fold-0 base learner, with 6 epochs of stage 2 (1200 iterations, twice the row's ~600)."""
    return ["model.use_multi_similarity=false", "model.use_attention=false",
            "model.use_base_learner=false",
            "meta.base_learner=checkpoints/toy/fold0/msanet_1shot.pth", "meta.epochs=6"]


# --- Typical mistakes: each check must reject every function below. -------------------------

def minmax_no_eps(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Forgets the epsilon: a constant row becomes NaN (0 / 0)."""
    lo = x.amin(dim=1, keepdim=True)
    return (x - lo) / (x.amax(dim=1, keepdim=True) - lo)


def minmax_global(x: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Takes the min and max over the whole batch instead of per row (per episode)."""
    return (x - x.min()) / (x.max() - x.min() + eps)


def mean_prior_over_query(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                          supp_mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Averages over the wrong axis: over the query pixels instead of the support pixels."""
    b, _, c, h, w = supp_feat.shape
    mask = F.interpolate(supp_mask[:, :1], size=(h, w), mode="bilinear", align_corners=True)
    s = (supp_feat[:, 0] * mask).reshape(b, c, h * w).transpose(1, 2)
    q = query_feat.reshape(b, c, h * w)
    cos = s.bmm(q) / (s.norm(dim=2, keepdim=True) * q.norm(dim=1, keepdim=True) + eps)
    return minmax_normalise(cos.mean(dim=2), eps).reshape(b, 1, h, w)


def mean_prior_not_normalised(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                              supp_mask: torch.Tensor, eps: float = 1e-7) -> torch.Tensor:
    """Skips the final min-max step: raw mean cosines, not a [0, 1] prior."""
    b, _, c, h, w = supp_feat.shape
    mask = F.interpolate(supp_mask[:, :1], size=(h, w), mode="bilinear", align_corners=True)
    weights = mask.reshape(b, h * w, 1)
    s = (supp_feat[:, 0] * mask).reshape(b, c, h * w).transpose(1, 2)
    q = query_feat.reshape(b, c, h * w)
    cos = s.bmm(q) / (s.norm(dim=2, keepdim=True) * q.norm(dim=1, keepdim=True) + eps)
    return ((cos * weights).sum(dim=1) / (weights.sum(dim=1) + eps)).reshape(b, 1, h, w)


def average_prior_unweighted(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Ignores the weights: the plain mean over the shots."""
    return priors.mean(dim=1)


def average_prior_max(priors: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Takes the max over the weighted shots instead of their weighted sum."""
    return (priors * weights[:, :, None, None]).amax(dim=1)


def pfenet_longer_keeps_ensemble() -> list[str]:
    """Leaves the base-learner ensemble on: that is a different row, not PFENet-like."""
    return ["model.use_multi_similarity=false", "model.use_attention=false",
            "meta.base_learner=checkpoints/toy/fold0/msanet_1shot.pth", "meta.epochs=6"]


def pfenet_longer_same_length() -> list[str]:
    """Keeps about the row's length (3 epochs of 200 iterations): nothing to learn from."""
    return ["model.use_multi_similarity=false", "model.use_attention=false",
            "model.use_base_learner=false",
            "meta.base_learner=checkpoints/toy/fold0/msanet_1shot.pth", "meta.epochs=3"]


def pfenet_longer_random_base() -> list[str]:
    """Uses ``meta.base_learner=none``: a random frozen backbone instead of the shipped one."""
    return ["model.use_multi_similarity=false", "model.use_attention=false",
            "model.use_base_learner=false", "meta.base_learner=none", "meta.epochs=6"]


MISTAKES = {
    "minmax_normalise": [minmax_no_eps, minmax_global],
    "mean_prior": [mean_prior_over_query, mean_prior_not_normalised],
    "average_prior": [average_prior_unweighted, average_prior_max],
    "pfenet_longer_overrides": [pfenet_longer_keeps_ensemble, pfenet_longer_same_length,
                                pfenet_longer_random_base],
}
