"""K-shot reweighting of the support shots (BAM; spec section 1.5).

With K > 1 shots, each shot gets a weight from its scene difference psi_k: the psi values are
sorted, passed through a small 1x1-conv network over the shot axis (``kshot_rw``), brought
back to shot order and softmax-normalised. The weights combine the prototypes, the prior
masks and psi itself.

Ordering. BAM's original code, which MSANet kept, gathers the network output with
``idx1.gather(1, argsort(idx1))``, which is always the identity: the weights computed for the
*sorted* shots are applied to the shots in their *original* order ("authors"). BAM later fixed
this to gather with ``argsort(idx1)`` ("bam"), which un-sorts the weights correctly.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

KSHOT_ORDERS = ("authors", "bam")


def kshot_reweighter(shots: int, trans_dim: int = 2) -> nn.Module:
    """``kshot_rw``: (B, K, 1, 1) sorted psi -> (B, K, 1, 1) unnormalised weights.

    trans_dim > 0: Conv1x1(K -> trans_dim, bias) + ReLU + Conv1x1(trans_dim -> K, bias).
    trans_dim == 0: a single Conv1x1(K -> K, no bias) initialised to 1/K.
    """
    if trans_dim < 0:
        raise ValueError(f"kshot_trans_dim must be >= 0, got {trans_dim}")
    if trans_dim == 0:
        conv = nn.Conv2d(shots, shots, kernel_size=1, bias=False)
        with torch.no_grad():
            conv.weight.fill_(1.0 / shots)
        return conv
    return nn.Sequential(
        nn.Conv2d(shots, trans_dim, kernel_size=1),
        nn.ReLU(inplace=True),
        nn.Conv2d(trans_dim, shots, kernel_size=1),
    )


def kshot_weights(est_val_total: Tensor, reweighter: nn.Module | None, order: str = "authors") -> Tensor:
    """Softmax shot weights.

    Args:
        est_val_total: (B, K, 1, 1) scene difference of every shot.
        reweighter: ``kshot_rw`` (None for K = 1).
        order: "authors" (identity gather, as MSANet) or "bam" (corrected gather).

    Returns:
        (B, K, 1, 1) weights summing to 1 over K (all ones when K = 1).
    """
    if order not in KSHOT_ORDERS:
        raise ValueError(f"kshot_order must be one of {KSHOT_ORDERS}, got {order!r}")
    if est_val_total.shape[1] == 1:
        return torch.ones_like(est_val_total)
    if reweighter is None:
        raise ValueError("a kshot reweighter is required for more than one shot")
    sorted_val, sort_idx = est_val_total.sort(dim=1)
    weight = reweighter(sorted_val)
    if order == "bam":
        weight = weight.gather(1, sort_idx.argsort(dim=1))
    # "authors": the gather index idx1.gather(1, argsort(idx1)) is the identity, so the weights
    # stay in sorted order while being applied to the shots in their original order.
    return weight.softmax(dim=1)
