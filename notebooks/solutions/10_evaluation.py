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


def class_miou(inter: torch.Tensor, union: torch.Tensor, class_index: torch.Tensor,
               n_classes: int) -> float:
    """Sum the foreground counts per class, divide per class (empty union = 0), average over
    all ``n_classes`` classes."""
    i = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, class_index, inter.double())
    u = torch.zeros(n_classes, dtype=torch.float64).index_add_(0, class_index, union.double())
    iou = torch.where(u > 0, i / u.clamp_min(1), torch.zeros_like(u))
    return float(iou.sum() / n_classes)


def no_ensemble_experiment() -> dict:
    """--set overrides of a stage-2 run without the base learner and its ensemble."""
    return {"model.use_base_learner": False}


# ---- typical wrong answers: every check must reject each of them ---------------------------

def _size_no_floor(h: int, w: int, size: int) -> tuple[int, int]:
    """Forgets to floor the sides to a multiple of 8 (473 stays 473)."""
    if h >= w:
        return size, int(w * (size / h))
    return int(h * (size / w)), size


def _size_square(h: int, w: int, size: int) -> tuple[int, int]:
    """Resizes to a square (HSNet-style), losing the aspect ratio."""
    side = size // 8 * 8
    return side, side


def _score_counts_255(logits: torch.Tensor, raw_label: torch.Tensor
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Counts the 255 pixels (canvas padding, boundaries) as background."""
    h0, w0 = raw_label.shape
    side = max(h0, w0)
    pred = F.interpolate(logits[None].float(), size=(side, side), mode="bilinear",
                         align_corners=True)[0].argmax(0)
    target = torch.zeros((side, side), dtype=torch.int64)
    target[:h0, :w0] = torch.where(raw_label == IGNORE, 0, raw_label)
    inter = torch.stack([((pred == k) & (target == k)).sum() for k in (0, 1)])
    union = torch.stack([((pred == k) | (target == k)).sum() for k in (0, 1)])
    return inter, union


def _score_on_network_canvas(logits: torch.Tensor, raw_label: torch.Tensor
                             ) -> tuple[torch.Tensor, torch.Tensor]:
    """Scores at the network's S x S canvas (label resized nearest), not at L x L."""
    s = logits.shape[-1]
    h0, w0 = raw_label.shape
    side = max(h0, w0)
    target = torch.full((side, side), IGNORE, dtype=torch.int64)
    target[:h0, :w0] = raw_label
    target = F.interpolate(target[None, None].float(), size=(s, s), mode="nearest")[0, 0].long()
    pred = logits.argmax(0)
    valid = target != IGNORE
    inter = torch.stack([((pred == k) & (target == k) & valid).sum() for k in (0, 1)])
    union = torch.stack([(((pred == k) | (target == k)) & valid).sum() for k in (0, 1)])
    return inter, union


def _miou_episode_mean(inter: torch.Tensor, union: torch.Tensor, class_index: torch.Tensor,
                       n_classes: int) -> float:
    """Averages per-episode IoUs instead of pooling the counts of each class."""
    return float((inter.double() / union.double().clamp_min(1)).mean())


def _miou_present_only(inter: torch.Tensor, union: torch.Tensor, class_index: torch.Tensor,
                       n_classes: int) -> float:
    """Averages over the classes that appeared only (a missing class should count 0)."""
    present = class_index.unique()
    ious = [inter[class_index == c].sum().double() / union[class_index == c].sum().clamp_min(1)
            for c in present]
    return float(torch.stack(ious).mean())


def _miou_pooled_all(inter: torch.Tensor, union: torch.Tensor, class_index: torch.Tensor,
                     n_classes: int) -> float:
    """Pools all episodes into one IoU (that is pIoU, not mIoU)."""
    return float(inter.sum() / union.sum().clamp_min(1))


def _experiment_top_level_key() -> dict:
    """Puts the switch outside the model section (the config loader rejects the key)."""
    return {"use_base_learner": False}


def _experiment_wrong_switch() -> dict:
    """Switches off the attention instead of the base learner."""
    return {"model.use_attention": False}


def _experiment_two_changes() -> dict:
    """Removes the attention too: two changes at once, the comparison says nothing."""
    return {"model.use_base_learner": False, "model.use_attention": False}


MISTAKES = {
    "test_size": [_size_no_floor, _size_square],
    "score_episode": [_score_counts_255, _score_on_network_canvas],
    "class_miou": [_miou_episode_mean, _miou_present_only, _miou_pooled_all],
    "no_ensemble_experiment": [_experiment_top_level_key, _experiment_wrong_switch,
                               _experiment_two_changes],
}
