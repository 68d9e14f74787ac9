"""Gram-matrix scene difference and the meta/base learner ensemble (BAM; spec 1.5, 1.10).

Scene difference (BAM's "estimator"): the cosine Gram matrix of a low-level map F (C, hw),

    G = (F F^T) / (||F_i|| ||F_j|| + 1e-7)                              (C x C)
    psi_k = ||G_query - G_support_k||_F / ||1_{CxC}||_F   (= / C)

measures how different the query and support scenes are. The ensemble then adjusts the meta
learner's probabilities with psi and suppresses the background where the frozen base learner
sees any base class:

    p_bg' = gram_merge(p_meta_bg, psi),   p_fg' = gram_merge(p_meta_fg, psi)
    final = [cls_merge(p_bg', sum_{c in base, c != episode class} p_base_c),  p_fg']

``gram_merge`` and ``cls_merge`` are 1x1 convs (2 -> 1, no bias) initialised to [1, 0], so
training starts from the plain meta learner. The two outputs are used as logits as they are.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from msanet_lib.runtime import float32_autocast_off

GRAM_EPS = 1e-7


def gram_matrix(feat: Tensor, eps: float = GRAM_EPS) -> Tensor:
    """Cosine Gram matrix of the channels. (N, C, h, w) -> (N, C, C)."""
    n, c = feat.shape[:2]
    f = feat.reshape(n, c, -1)
    norm = f.norm(dim=2, keepdim=True)  # (N, C, 1)
    return f.bmm(f.transpose(1, 2)) / (norm.bmm(norm.transpose(1, 2)) + eps)


@float32_autocast_off
def scene_difference(query_low: Tensor, supp_low: Tensor, eps: float = GRAM_EPS) -> Tensor:
    """psi for every shot.

    Args:
        query_low: (B, C, h, w) query layer2 features.
        supp_low: (B, K, C, h, w) support layer2 features.

    Returns:
        (B, K, 1, 1) normalised Frobenius distances between the Gram matrices.
    """
    b, k, c = supp_low.shape[:3]
    g_query = gram_matrix(query_low, eps)  # computed once, shared by the K shots
    g_supp = gram_matrix(supp_low.reshape(b * k, *supp_low.shape[2:]), eps).reshape(b, k, c, c)
    # ||ones(C, C)||_F = C
    return ((g_query[:, None] - g_supp).norm(dim=(2, 3)) / c).reshape(b, k, 1, 1)


def merge_conv() -> nn.Conv2d:
    """A 2 -> 1 channel 1x1 conv without bias, initialised to pass channel 0 through."""
    conv = nn.Conv2d(2, 1, kernel_size=1, bias=False)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([1.0, 0.0]).reshape(1, 2, 1, 1))
    return conv


def base_foreground(base_prob: Tensor, exclude: Tensor | None = None) -> Tensor:
    """Total probability of the base classes, i.e. of "not background for this episode".

    Args:
        base_prob: (B, C_base, h, w) softmax of the base learner (channel 0 = background).
        exclude: optional (B,) long channel index to leave out per episode (in training, the
            episode's own class ``cat_idx + 1``, since it is the target, not a distractor).

    Returns:
        (B, 1, h, w).
    """
    keep = torch.ones(base_prob.shape[:2], dtype=base_prob.dtype, device=base_prob.device)
    keep[:, 0] = 0
    if exclude is not None:
        keep.scatter_(1, exclude.reshape(-1, 1).to(device=base_prob.device, dtype=torch.long), 0.0)
    return (base_prob * keep[:, :, None, None]).sum(dim=1, keepdim=True)


def ensemble(
    meta_logits: Tensor,
    est_val: Tensor,
    gram_merge: nn.Module,
    cls_merge: nn.Module | None = None,
    base_logits: Tensor | None = None,
    exclude: Tensor | None = None,
) -> Tensor:
    """Final two-channel output of MSANet.

    Args:
        meta_logits: (B, 2, h, w) meta learner logits.
        est_val: (B, 1, 1, 1) shot-weighted scene difference psi.
        gram_merge, cls_merge: the two 2 -> 1 convs.
        base_logits: (B, C_base, h, w) base learner logits, or None to skip the base learner
            (ablation): the output is then the Gram-adjusted meta probabilities.
        exclude: see :func:`base_foreground`.

    Returns:
        (B, 2, h, w) [background, foreground] scores, used as logits.
    """
    meta_prob = meta_logits.softmax(dim=1)
    est_map = est_val.to(meta_prob.dtype).expand_as(meta_prob[:, :1])
    bg = gram_merge(torch.cat([meta_prob[:, :1], est_map], dim=1))
    fg = gram_merge(torch.cat([meta_prob[:, 1:], est_map], dim=1))
    if base_logits is not None:
        if cls_merge is None:
            raise ValueError("cls_merge is required when base_logits is given")
        base_map = base_foreground(base_logits.softmax(dim=1), exclude).to(bg.dtype)
        bg = cls_merge(torch.cat([bg, base_map], dim=1))
    return torch.cat([bg, fg], dim=1)
