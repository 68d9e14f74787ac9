"""Training-free prior mask (PFENet, used unchanged by BAM and MSANet; spec section 1.6).

For every query pixel q of the frozen layer4 map, the prior is its best cosine match among
the masked support pixels s, min-max normalised over the query pixels of each sample:

    c(q)   = max_s  <F_q(q), F_s(s) M_s(s)> / (||F_q(q)|| ||F_s(s) M_s(s)|| + 1e-7)
    P(q)   = (c(q) - min_q c) / (max_q c - min_q c + 1e-7)

MSANet (unlike BAM) computes the support layer4 on the *unmasked* image features and only
multiplies the mask in here.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from msanet_lib.runtime import float32_autocast_off, padded_length, pixel_rows

PRIOR_EPS = 1e-7


@float32_autocast_off
def prior_mask(
    query_feat: Tensor,
    supp_feat: Tensor,
    supp_mask: Tensor,
    out_size: tuple[int, int],
    eps: float = PRIOR_EPS,
) -> Tensor:
    """Prior masks of every shot, batched over episodes and shots.

    Args:
        query_feat: (B, C, h, w) query layer4 features.
        supp_feat: (B, K, C, h, w) support layer4 features (unmasked).
        supp_mask: (B, K, H, W) float binary support masks at image resolution.
        out_size: (h3, w3) size to resize the prior to (the layer3 size).
        eps: added to the product of norms and to the min-max range.

    Returns:
        (B, K, 1, h3, w3) prior per shot, values in [0, 1].
    """
    b, k, c, h, w = supp_feat.shape
    mask = F.interpolate(
        supp_mask.reshape(b * k, 1, *supp_mask.shape[-2:]),
        size=(h, w),
        mode="bilinear",
        align_corners=True,
    ).reshape(b * k, h * w)
    # A support pixel outside the mask is a zero vector, whose cosine is exactly 0 (0 / eps).
    # So the max over all support pixels equals the max over the pixels inside the mask plus,
    # if the mask has a zero anywhere, one zero-mask pixel. Only those columns are gathered:
    # typically a small fraction of the image, which shrinks the (HWs x HWq) similarity.
    inside = mask > 0
    order = torch.argsort((~inside).to(torch.uint8), dim=1, stable=True)  # inside pixels first
    # All h*w columns on accelerators (a static size: no host sync), see padded_length.
    n_cols = padded_length(inside.sum(dim=1), h * w, extra=1)
    index = order[:, :n_cols]  # (B*K, n): inside pixels, then (if any) zero-mask pixels
    # Pixels as rows, (N, hw, C): a view of an NCHW map and of a channels_last one alike, so
    # neither layout pays a copy of the 2048-channel maps (reshape(N, C, hw) copies a
    # channels_last map).
    supp = pixel_rows(supp_feat.reshape(b * k, c, h, w))
    supp = supp.gather(1, index[:, :, None].expand(-1, -1, c))  # (B*K, n, C)
    supp = supp * mask.gather(1, index).to(supp.dtype)[:, :, None]
    supp = supp.reshape(b, k * n_cols, c)
    query = pixel_rows(query_feat)  # (B, HWq, C)
    hw_q = query.shape[1]
    # One bmm per episode covers all its shots: (B, K*n, C) x (B, C, HWq); in-place division
    # keeps two (B, K*n, HWq) buffers alive at most.
    sim = supp.bmm(query.transpose(1, 2))
    norms = supp.norm(dim=2, keepdim=True) * query_feat.norm(dim=1).reshape(b, 1, hw_q)
    sim = sim.div_(norms.add_(eps).to(sim.dtype))
    del norms
    best = sim.reshape(b, k, n_cols, hw_q).amax(dim=2)  # (B, K, HWq)
    lo = best.amin(dim=2, keepdim=True)
    hi = best.amax(dim=2, keepdim=True)
    prior = ((best - lo) / (hi - lo + eps)).reshape(b * k, 1, *query_feat.shape[-2:])
    prior = F.interpolate(prior, size=out_size, mode="bilinear", align_corners=True)
    return prior.reshape(b, k, 1, *out_size)
