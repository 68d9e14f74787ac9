"""Worked solutions of notebook 10 · Evaluation."""

from __future__ import annotations

import torch
import torch.nn.functional as F

IGNORE = 255


def test_size(h: int, w: int, size: int) -> tuple[int, int]:
    """The authors' test resize: long side -> ``size``, short side in proportion (truncated),
    then both floored to a multiple of 8 (never below 8)."""
    if h >= w:
        new_h, new_w = size, int(w * (size / h))
    else:
        new_h, new_w = int(h * (size / w)), size
    return max(8, new_h // 8 * 8), max(8, new_w // 8 * 8)


def score_episode(logits: torch.Tensor, raw_label: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """(2,) intersection and union (background, foreground) of one episode, scored on the
    L x L canvas: logits (2, S, S) resized bilinearly (align_corners=True) to L = max(h0, w0),
    target = the original label top-left on a canvas of 255."""
    h0, w0 = raw_label.shape
    side = max(h0, w0)
    pred = F.interpolate(logits[None].float(), size=(side, side), mode="bilinear",
                         align_corners=True)[0].argmax(0)
    target = torch.full((side, side), IGNORE, dtype=torch.int64)
    target[:h0, :w0] = raw_label
    valid = target != IGNORE
    inter = torch.stack([((pred == k) & (target == k) & valid).sum() for k in (0, 1)])
    union = torch.stack([(((pred == k) | (target == k)) & valid).sum() for k in (0, 1)])
    return inter, union
