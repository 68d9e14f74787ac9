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
