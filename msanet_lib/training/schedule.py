"""The authors' learning-rate schedule: poly decay per iteration with a 10x multiplier.

BAM/MSANet call ``poly_learning_rate`` before every optimizer step with the 1-based iteration
``t = epoch * iters_per_epoch + i + 1`` and ``max_iter = epochs * iters_per_epoch``:

    lr(t) = base_lr * (1 - t / max_iter) ** power

Parameter group ``g`` (0-based) then gets ``lr(t)`` if ``g <= index_split`` and
``scale_lr * lr(t)`` otherwise. With ``index_split = -1`` every group is scaled, so MSANet's
``base_lr = 0.005`` starts at an effective 0.05; stage 1 on PASCAL uses ``index_split = 0``
(encoder at ``lr``, PPM and classifier at ``10 * lr``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch


def poly_lr(base_lr: float, iteration: int, max_iter: int, power: float = 0.9) -> float:
    """``base_lr * (1 - iteration / max_iter) ** power`` (``iteration`` is 1-based)."""
    if max_iter <= 0:
        raise ValueError(f"max_iter={max_iter} must be positive (epochs x iterations per epoch).")
    frac = min(max(iteration / max_iter, 0.0), 1.0)
    return base_lr * (1.0 - frac) ** power


@dataclass
class PolySchedule:
    """Poly decay with BAM's group multiplier; its state is what a checkpoint needs to resume."""

    base_lr: float
    max_iter: int
    power: float = 0.9
    index_split: int = -1
    scale_lr: float = 10.0

    def group_lrs(self, iteration: int, num_groups: int) -> list[float]:
        """Learning rate of each of ``num_groups`` parameter groups at ``iteration`` (1-based)."""
        lr = poly_lr(self.base_lr, iteration, self.max_iter, self.power)
        return [lr if g <= self.index_split else lr * self.scale_lr for g in range(num_groups)]

    def apply(self, optimizer: torch.optim.Optimizer, iteration: int) -> list[float]:
        """Set every group's lr for the step about to be taken; returns the values set."""
        lrs = self.group_lrs(iteration, len(optimizer.param_groups))
        for group, lr in zip(optimizer.param_groups, lrs):
            group["lr"] = lr
        return lrs

    def state_dict(self) -> dict[str, Any]:
        return asdict(self)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        for key, value in state.items():
            if not hasattr(self, key):
                raise ValueError(f"Unknown schedule field {key!r} in the checkpoint.")
            setattr(self, key, value)
