"""Training losses of MSANet (BAM; spec section 2).

All three are cross-entropy with ignore index 255 and mean reduction, on outputs already
upsampled to the image size:

    L = CE(final, y_m) + w_1 CE(meta, y_m) + w_2 CE(base, y_b)      (w_1 = w_2 = 1 in all configs)

The base loss carries no gradient (the base learner is frozen); it is reported for monitoring.
"""

from __future__ import annotations

from typing import NamedTuple

import torch.nn.functional as F
from torch import Tensor

from msanet_lib.runtime import IGNORE_LABEL


class MSANetLosses(NamedTuple):
    main_loss: Tensor
    aux_loss1: Tensor
    aux_loss2: Tensor


def segmentation_loss(logits: Tensor, target: Tensor, ignore_index: int = IGNORE_LABEL) -> Tensor:
    """CE over pixels. logits (B, C, H, W), target (B, H, W) with ``ignore_index`` ignored."""
    return F.cross_entropy(logits.float(), target.long(), ignore_index=ignore_index)


def msanet_losses(
    final_out: Tensor,
    meta_out: Tensor,
    base_out: Tensor | None,
    y_m: Tensor,
    y_b: Tensor | None,
    ignore_index: int = IGNORE_LABEL,
) -> MSANetLosses:
    """main (final vs binary label), aux1 (meta vs binary label), aux2 (base vs base label).

    Without a base learner (or base label) aux2 is a zero tensor: there is nothing to score.
    """
    main = segmentation_loss(final_out, y_m, ignore_index)
    aux1 = segmentation_loss(meta_out, y_m, ignore_index)
    if base_out is None or y_b is None:
        aux2 = main.new_zeros(())
    else:
        aux2 = segmentation_loss(base_out, y_b, ignore_index)
    return MSANetLosses(main, aux1, aux2)
