"""Reference points every few-shot model must beat (README table, ablation, notebooks 02 and 10).

- :class:`AllForeground`: every query pixel is the target. It ignores the support, so its mIoU
  is the floor of the benchmark.
- :class:`PrototypeBaseline`: training-free. The frozen backbone's mid-level features
  ``cat[layer3, layer2]`` (the meta learner's input), one prototype per support by masked
  average pooling (K shots averaged), the cosine map to every query cell, min-max scaled per
  image, then a fixed threshold ``t``: :math:`\\hat M_q = [\\mathrm{minmax}(\\cos(v_s, F_q)) > t]`.
  ``t`` is chosen on *base*-class episodes (:func:`choose_threshold`), never on the novel ones.

Both have the evaluation forward of MSANet: ``model(x, s_x, s_y) -> (final_out, meta_out,
None)`` with two-channel scores at the input size, so :func:`~msanet_lib.evaluation.evaluate`
scores them with the same protocol.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import Backbone
from msanet_lib.modules.masked_pooling import masked_average_pooling


class AllForeground(nn.Module):
    """Trivial baseline: every query pixel is foreground (no learning, no support used).

    ``forward(x, s_x, s_y)`` -> (final_out, meta_out, None), logits (B, 2, H, W) with the
    foreground channel higher everywhere.
    """

    def forward(self, x: Tensor, s_x: Tensor, s_y: Tensor) -> tuple:
        logits = torch.zeros(x.shape[0], 2, *x.shape[-2:], device=x.device)
        logits[:, 1] = 1.0
        return logits, logits, None


def minmax(maps: Tensor, eps: float = 1e-7) -> Tensor:
    """Rescale each (h, w) map of a (B, h, w) batch to [0, 1]."""
    lo = maps.flatten(1).amin(1).view(-1, 1, 1)
    hi = maps.flatten(1).amax(1).view(-1, 1, 1)
    return (maps - lo) / (hi - lo + eps)


class PrototypeBaseline(nn.Module):
    """Masked average pooling + cosine + a fixed threshold, on a frozen backbone (no training).

    Args:
        backbone: the encoder (e.g. a trained model's ``_backbone``); it is not modified.
        threshold: ``t`` in [0, 1] on the min-max scaled cosine map.
    """

    def __init__(self, backbone: Backbone, threshold: float = 0.5) -> None:
        super().__init__()
        self.backbone = backbone
        self.threshold = float(threshold)

    def _mid(self, x: Tensor) -> Tensor:
        layers = self.backbone(x).layers
        l2, l3 = layers[2], layers[3]
        if l2.shape[-2:] != l3.shape[-2:]:
            l2 = F.interpolate(l2, size=l3.shape[-2:], mode="bilinear", align_corners=True)
        return torch.cat([l3, l2], dim=1)

    @torch.no_grad()
    def similarity(self, x: Tensor, s_x: Tensor, s_y: Tensor) -> Tensor:
        """Min-max scaled cosine map at the input size: x (B, 3, H, W), s_x (B, K, 3, H, W),
        s_y (B, K, H, W) 0/1/255 -> (B, H, W) in [0, 1]."""
        b, k = s_x.shape[:2]
        feats = self._mid(torch.cat([x, s_x.flatten(0, 1)]))
        q, s = feats[:b], feats[b:]
        mask = (s_y == 1).to(s.dtype).flatten(0, 1)[:, None]
        mask = F.interpolate(mask, size=s.shape[-2:], mode="bilinear", align_corners=True)
        proto = masked_average_pooling(s, mask).view(b, k, -1, 1, 1).mean(1)   # (B, C, 1, 1)
        cos = minmax(F.cosine_similarity(q, proto, dim=1, eps=1e-7))
        return F.interpolate(cos[:, None], size=x.shape[-2:], mode="bilinear",
                             align_corners=True)[:, 0]

    def forward(self, x: Tensor, s_x: Tensor, s_y: Tensor) -> tuple:
        sim = self.similarity(x, s_x, s_y)
        logits = torch.stack([self.threshold - sim, sim - self.threshold], dim=1)
        return logits, logits, None


@torch.no_grad()
def choose_threshold(baseline: PrototypeBaseline, batches: Sequence[dict],
                     thresholds: Sequence[float]) -> tuple[float, list[float]]:
    """The threshold with the best foreground IoU over base-class episodes (intersections and
    unions summed over the episodes, as a class IoU).

    Args:
        batches: collated episodes of *base* classes (``query_img``, ``support_imgs``,
            ``support_masks``, ``query_mask`` on the canvas, 255 = ignore).
        thresholds: candidates in [0, 1].

    Returns:
        (best threshold, the foreground IoU of every candidate).
    """
    t = torch.tensor(list(thresholds), dtype=torch.float32)
    inter = torch.zeros(len(t))
    union = torch.zeros(len(t))
    for batch in batches:
        sim = baseline.similarity(batch["query_img"], batch["support_imgs"],
                                  batch["support_masks"])                 # (B, H, W)
        target = batch["query_mask"]
        valid = target != 255
        pred = sim[None] > t.view(-1, 1, 1, 1)                              # (T, B, H, W)
        fg = (target == 1) & valid
        inter += (pred & fg).flatten(1).sum(1).float()
        union += ((pred & valid) | fg).flatten(1).sum(1).float()
    scores = (inter / union.clamp_min(1)).tolist()
    best = max(range(len(scores)), key=scores.__getitem__)
    return float(t[best]), scores


__all__ = ["AllForeground", "PrototypeBaseline", "choose_threshold", "minmax"]
