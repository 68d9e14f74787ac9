"""Worked solutions of notebook 00 · The few-shot segmentation task."""

from __future__ import annotations

import math

import torch

from msanet_lib.data.transforms import denormalize

IGNORE = 255


def episode_iou(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Foreground IoU of one (H, W) episode, 255 pixels ignored; NaN for an empty union."""
    valid = target != IGNORE
    p = (pred == 1) & valid
    t = (target == 1) & valid
    union = int((p | t).sum())
    return int((p & t).sum()) / union if union else math.nan


def accumulated_miou(preds: torch.Tensor, targets: torch.Tensor, class_index: torch.Tensor,
                     n_classes: int) -> float:
    """Sum foreground I and U per class over the episodes, divide, average over all classes.

    A class that never appeared scores 0, as in the authors' test.py (I / (U + 1e-10)).
    """
    valid = targets != IGNORE
    p = (preds == 1) & valid
    t = (targets == 1) & valid
    inter = (p & t).sum(dim=(1, 2))
    union = (p | t).sum(dim=(1, 2))
    class_i = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, inter)
    class_u = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, union)
    return (class_i.double() / class_u.clamp_min(1)).mean().item()


def all_background_fb_iou(targets: torch.Tensor) -> float:
    """FB-IoU of the all-zero prediction: foreground IoU 0, background IoU = share of
    background among the valid target pixels (pooled over all episodes)."""
    valid = targets != IGNORE
    background = ((targets == 0) & valid).sum().item()
    return 0.5 * (background / valid.sum().item() + 0.0)


def _mean_rgb(support_imgs: torch.Tensor, support_masks: torch.Tensor) -> torch.Tensor:
    """(B, K, 3, H, W) normalised supports, (B, K, H, W) masks -> (B, 3) mean foreground RGB."""
    rgb = denormalize(support_imgs)
    w = (support_masks == 1).float().unsqueeze(2)                     # (B, K, 1, H, W)
    return (rgb * w).sum(dim=(1, 3, 4)) / w.sum(dim=(1, 3, 4)).clamp_min(1e-6)


def colour_baseline(query_img: torch.Tensor, support_imgs: torch.Tensor,
                    support_masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Foreground where the query's RGB (0..255) lies within ``radius`` of the mean RGB of the
    support foreground pixels (all K shots together): (B, H, W) long 0/1."""
    mean = _mean_rgb(support_imgs, support_masks)
    dist = (denormalize(query_img) - mean[:, :, None, None]).norm(dim=1)
    return (dist < radius).long()


# --- Typical mistakes: each check must reject every function below. -------------------------

def episode_iou_counts_ignored(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Forgets the 255 pixels: a foreground prediction on them enlarges the union."""
    p = pred == 1
    t = target == 1
    union = int((p | t).sum())
    return int((p & t).sum()) / union if union else math.nan


def episode_iou_empty_is_zero(pred: torch.Tensor, target: torch.Tensor) -> float:
    """Returns 0 instead of NaN when the union is empty (IoU undefined, not a failure)."""
    valid = target != IGNORE
    p = (pred == 1) & valid
    t = (target == 1) & valid
    union = int((p | t).sum())
    return int((p & t).sum()) / union if union else 0.0


def accumulated_miou_mean_of_episodes(preds: torch.Tensor, targets: torch.Tensor,
                                      class_index: torch.Tensor, n_classes: int) -> float:
    """Averages per-episode IoUs within each class instead of accumulating the counts."""
    valid = targets != IGNORE
    p = (preds == 1) & valid
    t = (targets == 1) & valid
    ious = (p & t).sum(dim=(1, 2)).double() / (p | t).sum(dim=(1, 2)).clamp_min(1)
    per_class = torch.zeros(n_classes, dtype=torch.float64)
    for c in range(n_classes):
        if (class_index == c).any():
            per_class[c] = ious[class_index == c].mean()
    return per_class.mean().item()


def accumulated_miou_present_only(preds: torch.Tensor, targets: torch.Tensor,
                                  class_index: torch.Tensor, n_classes: int) -> float:
    """Averages only the classes that appear (the authors count an absent class as 0)."""
    valid = targets != IGNORE
    p = (preds == 1) & valid
    t = (targets == 1) & valid
    inter = (p & t).sum(dim=(1, 2))
    union = (p | t).sum(dim=(1, 2))
    class_i = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, inter)
    class_u = torch.zeros(n_classes, dtype=torch.int64).index_add_(0, class_index, union)
    present = class_u > 0
    return (class_i[present].double() / class_u[present]).mean().item()


def all_background_counts_ignored(targets: torch.Tensor) -> float:
    """Counts the 255 pixels in the union: background share of *all* pixels."""
    return 0.5 * ((targets == 0).sum().item() / targets.numel())


def all_background_not_halved(targets: torch.Tensor) -> float:
    """Returns the background IoU alone, forgetting the foreground IoU (0) in the mean."""
    valid = targets != IGNORE
    return ((targets == 0) & valid).sum().item() / valid.sum().item()


def colour_baseline_whole_support(query_img: torch.Tensor, support_imgs: torch.Tensor,
                                  support_masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Ignores the mask: the mean colour of the whole support image, object and background."""
    mean = denormalize(support_imgs).mean(dim=(1, 3, 4))
    return ((denormalize(query_img) - mean[:, :, None, None]).norm(dim=1) < radius).long()


def colour_baseline_ignore_is_foreground(query_img: torch.Tensor, support_imgs: torch.Tensor,
                                         support_masks: torch.Tensor,
                                         radius: float) -> torch.Tensor:
    """Uses ``mask > 0``: the 255 (ignored) pixels count as foreground."""
    return colour_baseline(query_img, support_imgs, (support_masks > 0).long(), radius)


def colour_baseline_normalised(query_img: torch.Tensor, support_imgs: torch.Tensor,
                               support_masks: torch.Tensor, radius: float) -> torch.Tensor:
    """Forgets to denormalise: distances in normalised units against a 0..255 radius."""
    w = (support_masks == 1).float().unsqueeze(2)
    mean = (support_imgs * w).sum(dim=(1, 3, 4)) / w.sum(dim=(1, 3, 4)).clamp_min(1e-6)
    return ((query_img - mean[:, :, None, None]).norm(dim=1) < radius).long()


MISTAKES = {
    "episode_iou": [episode_iou_counts_ignored, episode_iou_empty_is_zero],
    "accumulated_miou": [accumulated_miou_mean_of_episodes, accumulated_miou_present_only],
    "all_background_fb_iou": [all_background_counts_ignored, all_background_not_halved],
    "colour_baseline": [colour_baseline_whole_support, colour_baseline_ignore_is_foreground,
                        colour_baseline_normalised],
}
