"""Segmentation metrics of the few-shot protocol: intersection/union, mIoU, FB-IoU, pIoU.

The field's convention (PFENet, BAM, MSANet, HSNet) is
"accumulate, then divide": intersections and unions are *summed* over episodes and only
the sums are divided. Per-episode IoUs are never averaged.

- **mIoU** (class-wise): for every novel class c of the fold,
  ``IoU_c = sum I_fg / sum U_fg`` over the episodes whose class is c; mIoU is the mean of
  IoU_c over the fold's classes.
- **FB-IoU**: background and foreground IoU, each ``sum I / sum U`` over *all* episodes
  of the fold, then averaged.
- **pIoU**: the foreground half of FB-IoU (foreground IoU pooled over all episodes).

Pixels whose target is the ignore label (255: VOC boundaries, the padding of the L x L
canvas) count in neither the intersection nor the union.

One deliberate difference from the authors' ``test.py``: a class that never appeared
(no episode, or a zero union) is *excluded* from the mean and reported in
``missing_classes``; the authors add ``1e-10`` to the union and so average in a 0.
With the standard 1000 episodes every class appears, so the two agree.

Counts are integers, so a validation sharded over several processes gives exactly the numbers of
one process once the meters' counts are summed over the processes (:meth:`FewShotIoU.all_reduce`,
:meth:`MultiClassIoU.all_reduce`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import Tensor

from msanet_lib.runtime import IGNORE_LABEL


def sum_over_processes(counts: list[Tensor], device: torch.device) -> list[Tensor]:
    """Each int64 tensor of ``counts`` summed over every process of the group (new tensors).

    One collective for all of them (they travel as one flat tensor). ``device`` is where the
    collective runs under NCCL (this process's GPU); gloo runs on the CPU. The sums are
    returned on the CPU, where the meters keep their counts. Without an initialised process
    group (one process) the tensors come back unchanged.
    """
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return counts
    where = device if dist.get_backend() == "nccl" else torch.device("cpu")
    flat = torch.cat([c.reshape(-1).to(where, torch.int64) for c in counts])
    dist.all_reduce(flat)
    parts = flat.cpu().split([c.numel() for c in counts])
    return [part.view(c.shape).clone() for c, part in zip(counts, parts)]


def intersection_and_union(
    pred: Tensor, target: Tensor, num_classes: int, ignore_index: int = IGNORE_LABEL
) -> tuple[Tensor, Tensor, Tensor]:
    """Per-episode, per-class pixel counts for a batch of label maps.

    Args:
        pred: (B, H, W) integer predictions in ``0 .. num_classes-1`` (e.g. ``argmax(1)``).
        target: (B, H, W) integer labels in ``0 .. num_classes-1`` or ``ignore_index``.
        num_classes: number of classes K (2 for a binary episode).
        ignore_index: target value whose pixels are skipped.

    Returns:
        ``(intersection, union, target_area)``, each (B, K) int64 on ``pred.device``:
        for every episode b and class k, ``|pred==k & target==k|``,
        ``|pred==k| + |target==k| - intersection`` and ``|target==k|``, counted over the
        pixels where ``target != ignore_index``.

    Works on any device: the counts are one ``bincount`` over ``b * K + class`` ids, so
    the batch is handled without a Python loop (and without ``histc`` on integers, which
    the CPU does not implement).
    """
    if pred.shape != target.shape or pred.dim() != 3:
        raise ValueError(
            f"pred and target must both be (B, H, W); got pred {tuple(pred.shape)} and "
            f"target {tuple(target.shape)}. Resize the logits to the label size before argmax."
        )
    if num_classes < 1:
        raise ValueError(f"num_classes must be >= 1, got {num_classes}")
    pred = pred.long()
    target = target.long()
    valid = target != ignore_index
    bad_target = valid & ((target < 0) | (target >= num_classes))
    if bool(bad_target.any()):
        found = torch.unique(target[bad_target]).tolist()[:10]
        raise ValueError(
            f"target holds values {found} outside 0..{num_classes - 1} that are not the ignore "
            f"label {ignore_index}; check num_classes or the label remapping."
        )
    bad_pred = valid & ((pred < 0) | (pred >= num_classes))
    if bool(bad_pred.any()):
        raise ValueError(f"pred holds values outside 0..{num_classes - 1}; pass argmax indices.")

    batch = pred.shape[0]
    offset = torch.arange(batch, device=pred.device).view(batch, 1, 1) * num_classes
    length = batch * num_classes
    pred_ids = (pred + offset)[valid]
    target_ids = (target + offset)[valid]
    hit_ids = target_ids[pred[valid] == target[valid]]
    area_inter = torch.bincount(hit_ids, minlength=length).view(batch, num_classes)
    area_pred = torch.bincount(pred_ids, minlength=length).view(batch, num_classes)
    area_target = torch.bincount(target_ids, minlength=length).view(batch, num_classes)
    return area_inter, area_pred + area_target - area_inter, area_target


def _ratio(num: Tensor, den: Tensor) -> Tensor:
    """num / den as float64, NaN where den == 0 (an undefined IoU, not a zero IoU)."""
    num = num.double()
    den = den.double()
    return torch.where(den > 0, num / den.clamp_min(1), torch.full_like(num, math.nan))


@dataclass
class FewShotIoU:
    """Accumulates binary-episode counts into class-wise mIoU, FB-IoU and pIoU.

    Args:
        class_ids: dataset class ids of the fold's classes, in the order of
            ``class_index`` (e.g. ``[1, 2, 3, 4, 5]`` for PASCAL fold 0).

    Counts are kept as int64 on the CPU, so results do not depend on float summation order.
    """

    class_ids: list[int]
    class_intersection: Tensor = field(init=False)
    class_union: Tensor = field(init=False)
    class_episodes: Tensor = field(init=False)
    fb_intersection: Tensor = field(init=False)
    fb_union: Tensor = field(init=False)

    def __post_init__(self) -> None:
        n = len(self.class_ids)
        if n == 0:
            raise ValueError("class_ids is empty: pass the fold's class ids")
        self.class_intersection = torch.zeros(n, dtype=torch.int64)
        self.class_union = torch.zeros(n, dtype=torch.int64)
        self.class_episodes = torch.zeros(n, dtype=torch.int64)
        self.fb_intersection = torch.zeros(2, dtype=torch.int64)
        self.fb_union = torch.zeros(2, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor, class_index: Tensor) -> None:
        """Adds a batch of episodes.

        Args:
            pred: (B, H, W) 0/1 predictions.
            target: (B, H, W) 0/1/255 labels at the same size.
            class_index: (B,) 0-based index of each episode's class in ``class_ids``.
        """
        inter, union, _ = intersection_and_union(pred, target, 2)
        self.add_counts(inter, union, class_index)

    def add_counts(self, intersection: Tensor, union: Tensor, class_index: Tensor) -> None:
        """Adds precomputed (B, 2) counts of B episodes with classes ``class_index`` (B,)."""
        class_index = torch.as_tensor(class_index).reshape(-1).long().cpu()
        n = len(self.class_ids)
        if class_index.numel() != intersection.shape[0]:
            raise ValueError(
                f"class_index has {class_index.numel()} entries for "
                f"{intersection.shape[0]} episodes"
            )
        if bool(((class_index < 0) | (class_index >= n)).any()):
            raise ValueError(f"class_index must lie in 0..{n - 1}, got {class_index.tolist()}")
        inter = intersection.long().cpu()
        union = union.long().cpu()
        self.class_intersection.index_add_(0, class_index, inter[:, 1])
        self.class_union.index_add_(0, class_index, union[:, 1])
        self.class_episodes.index_add_(0, class_index, torch.ones_like(class_index))
        self.fb_intersection += inter.sum(0)
        self.fb_union += union.sum(0)

    def all_reduce(self, device: torch.device) -> None:
        """Sum the counts over every process (each one scored its shard of the episodes);
        see :func:`sum_over_processes`. Every process of the group must call it."""
        (self.class_intersection, self.class_union, self.class_episodes, self.fb_intersection,
         self.fb_union) = sum_over_processes([self.class_intersection, self.class_union,
                                              self.class_episodes, self.fb_intersection,
                                              self.fb_union], device)

    @property
    def class_iou(self) -> list[float]:
        """IoU of each class of ``class_ids`` (NaN for a class that never appeared)."""
        return _ratio(self.class_intersection, self.class_union).tolist()

    @property
    def missing_classes(self) -> list[int]:
        """Class ids with no episode or a zero union: they count as 0 in :attr:`miou`."""
        return [c for c, iou in zip(self.class_ids, self.class_iou) if math.isnan(iou)]

    @property
    def miou(self) -> float:
        """Mean class IoU over ALL the fold's classes, a missing class counting as 0.

        The authors' ``test.py`` divides by ``union + 1e-10``, so a class that never appeared
        scores 0 and stays in the mean; :attr:`miou_present` is the variant that leaves it out.
        """
        return sum(0.0 if math.isnan(iou) else iou for iou in self.class_iou) / len(self.class_ids)

    @property
    def miou_present(self) -> float:
        """Mean class IoU over the classes that appeared (NaN if none did)."""
        ious = [iou for iou in self.class_iou if not math.isnan(iou)]
        return sum(ious) / len(ious) if ious else math.nan

    @property
    def fb_iou(self) -> float:
        """Mean of the pooled background and foreground IoU; an empty union counts as 0 (authors)."""
        bg, fg = _ratio(self.fb_intersection, self.fb_union).tolist()
        return sum(0.0 if math.isnan(v) else v for v in (bg, fg)) / 2

    @property
    def piou(self) -> float:
        """Foreground IoU pooled over all episodes."""
        return _ratio(self.fb_intersection, self.fb_union)[1].item()

    @property
    def episodes(self) -> int:
        return int(self.class_episodes.sum())


@dataclass
class MultiClassIoU:
    """Accumulates multi-class counts (the base learner's 16 or 61 classes).

    As in the authors' base-learner score in ``test.py``, background (class 0) is left out
    and classes with no ground-truth pixel are excluded from the mean. BAM's stage-1
    ``train_base.py`` validation instead averages over all classes including background:
    pass ``include_background=True`` for that.
    """

    num_classes: int
    include_background: bool = False
    intersection: Tensor = field(init=False)
    union: Tensor = field(init=False)
    target_area: Tensor = field(init=False)

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {self.num_classes}")
        self.intersection = torch.zeros(self.num_classes, dtype=torch.int64)
        self.union = torch.zeros(self.num_classes, dtype=torch.int64)
        self.target_area = torch.zeros(self.num_classes, dtype=torch.int64)

    def update(self, pred: Tensor, target: Tensor) -> None:
        """Adds (B, H, W) predictions and labels (0..num_classes-1 or 255)."""
        inter, union, area = intersection_and_union(pred, target, self.num_classes)
        self.intersection += inter.sum(0).cpu()
        self.union += union.sum(0).cpu()
        self.target_area += area.sum(0).cpu()

    def all_reduce(self, device: torch.device) -> None:
        """Sum the counts over every process (each one scored its shard of the images);
        see :func:`sum_over_processes`. Every process of the group must call it."""
        self.intersection, self.union, self.target_area = sum_over_processes(
            [self.intersection, self.union, self.target_area], device)

    @property
    def class_iou(self) -> list[float]:
        """IoU of classes 1..num_classes-1 (0.. with ``include_background``); NaN where the
        class had no ground truth."""
        iou = _ratio(self.intersection, self.union)
        iou[self.target_area == 0] = math.nan
        return iou[0 if self.include_background else 1 :].tolist()

    @property
    def miou(self) -> float:
        ious = [v for v in self.class_iou if not math.isnan(v)]
        return sum(ious) / len(ious) if ious else math.nan
