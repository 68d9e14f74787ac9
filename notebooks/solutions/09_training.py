"""Worked solutions of notebook 09 · Training MSANet."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

IGNORE = 255


def poly_group_lrs(base_lr: float, iteration: int, max_iter: int, num_groups: int,
                   index_split: int, scale_lr: float = 10.0, power: float = 0.9) -> list[float]:
    """Poly decay ``base_lr * (1 - t / T) ** power``; groups after ``index_split`` get x scale."""
    lr = base_lr * (1.0 - iteration / max_iter) ** power
    return [lr if g <= index_split else scale_lr * lr for g in range(num_groups)]


def trainable_per_module(model: nn.Module) -> dict[str, int]:
    """Top-level module name -> number of parameters with ``requires_grad`` (zeros left out)."""
    counts = {}
    for name, module in model.named_children():
        n = sum(p.numel() for p in module.parameters() if p.requires_grad)
        if n:
            counts[name] = n
    return counts


def stage2_loss(final_out: torch.Tensor, meta_out: torch.Tensor, base_out: torch.Tensor,
                y_m: torch.Tensor, y_b: torch.Tensor, w1: float = 1.0,
                w2: float = 1.0) -> torch.Tensor:
    """main + w1 * aux1 + w2 * aux2, each a pixel cross-entropy with 255 ignored."""
    main = F.cross_entropy(final_out, y_m, ignore_index=IGNORE)
    aux1 = F.cross_entropy(meta_out, y_m, ignore_index=IGNORE)
    aux2 = F.cross_entropy(base_out, y_b, ignore_index=IGNORE)
    return main + w1 * aux1 + w2 * aux2


def coco_stage1_lrs(total: int) -> list[float]:
    """[encoder, ppm, cls] learning rates at iteration total // 2 of COCO's stage 1: the poly
    rate, times scale_lr for every group after index_split (COCO: -1, so all three)."""
    from msanet_lib.training.config import load_config

    coco = load_config("coco_resnet50", fast=False).base
    return poly_group_lrs(coco.base_lr, total // 2, total, 3, coco.index_split, coco.scale_lr,
                          coco.power)


def no_multiplier_experiment() -> dict:
    """--set overrides: stage 2 without the 10x multiplier (every group at meta.base_lr)."""
    return {"meta.scale_lr": 1.0}


# ---- typical wrong answers: every check must reject each of them ---------------------------

def _coco_pascal_split(total: int) -> list[float]:
    """Assumes PASCAL's index_split 0 (encoder x1) for COCO, whose config says -1."""
    from msanet_lib.training.config import load_config

    coco = load_config("coco_resnet50", fast=False).base
    return poly_group_lrs(coco.base_lr, total // 2, total, 3, 0, coco.scale_lr, coco.power)


def _coco_no_decay(total: int) -> list[float]:
    """Forgets the poly decay: the starting rates, not those at total // 2."""
    from msanet_lib.training.config import load_config

    coco = load_config("coco_resnet50", fast=False).base
    return poly_group_lrs(coco.base_lr, 0, total, 3, coco.index_split, coco.scale_lr, coco.power)


def _trainable_counts_all(model: nn.Module) -> dict[str, int]:
    """Counts every parameter, frozen ones included."""
    return {name: sum(p.numel() for p in m.parameters())
            for name, m in model.named_children() if any(True for _ in m.parameters())}


def _trainable_keeps_zeros(model: nn.Module) -> dict[str, int]:
    """Keeps the frozen modules with a count of 0 instead of leaving them out."""
    return {name: sum(p.numel() for p in m.parameters() if p.requires_grad)
            for name, m in model.named_children() if any(True for _ in m.parameters())}


def _loss_weights_swapped(final_out: torch.Tensor, meta_out: torch.Tensor,
                          base_out: torch.Tensor, y_m: torch.Tensor, y_b: torch.Tensor,
                          w1: float = 1.0, w2: float = 1.0) -> torch.Tensor:
    """Puts w1 on the base-learner loss and w2 on the meta-learner loss."""
    return stage2_loss(final_out, meta_out, base_out, y_m, y_b, w2, w1)


def _loss_no_ignore(final_out: torch.Tensor, meta_out: torch.Tensor, base_out: torch.Tensor,
                    y_m: torch.Tensor, y_b: torch.Tensor, w1: float = 1.0,
                    w2: float = 1.0) -> torch.Tensor:
    """Forgets ignore_index=255 (the label 255 is then an out-of-range class)."""
    main = F.cross_entropy(final_out, y_m)
    aux1 = F.cross_entropy(meta_out, y_m)
    aux2 = F.cross_entropy(base_out, y_b)
    return main + w1 * aux1 + w2 * aux2


def _experiment_index_split_zero() -> dict:
    """index_split 0 leaves only the first group at x1; the other groups keep x10."""
    return {"meta.index_split": 0}


def _experiment_lower_base_lr() -> dict:
    """Divides base_lr by 10 instead of removing the multiplier (the config's rate changes)."""
    return {"meta.base_lr": 0.0005}


def _experiment_stage1() -> dict:
    """Removes the multiplier of stage 1 (base) instead of stage 2 (meta)."""
    return {"base.scale_lr": 1.0}


MISTAKES = {
    "coco_stage1_lrs": [_coco_pascal_split, _coco_no_decay],
    "trainable_per_module": [_trainable_counts_all, _trainable_keeps_zeros],
    "stage2_loss": [_loss_weights_swapped, _loss_no_ignore],
    "no_multiplier_experiment": [_experiment_index_split_zero, _experiment_lower_base_lr,
                                 _experiment_stage1],
}
