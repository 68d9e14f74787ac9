"""The support's layer4, computed only where its readers look (evaluation copies).

MSANet runs the frozen backbone on every support image unmasked, and two modules read the
support's layer4 and its blocks. Both multiply them by the support mask first:

- the prior (:func:`~msanet_lib.modules.prior.prior_mask`), by the mask resized bilinearly to
  layer4's size;
- multi-similarity (:mod:`~msanet_lib.modules.multi_similarity`), by the authors' chained resize
  of the mask, keeping only the cells where it is positive.

A layer4 cell where both resized masks are 0 is multiplied by 0: its value never reaches an
output. At 473 px a ResNet-50 layer4 is three bottlenecks on a 60 x 60 map with 2048 channels,
108 GFLOP per image and a fifth of the whole 1-shot forward, while a support object usually
covers part of its image.

So an evaluation copy (:func:`~msanet_lib.model.inference.prepare_for_inference`) computes the
support's layer4 on the smallest box ``B`` that holds every cell either resized mask touches
(over all supports of the batch). A stride-1 residual block whose 3x3 convolutions have
dilations ``d_1 .. d_n`` reads its input up to ``r = sum(d_i)`` cells away. Block ``j`` of the
stage therefore runs on ``B`` grown by the radii of blocks ``j .. last``, and its output is cut
to ``B`` grown by the radii of the blocks after it, where every value equals the whole-map one
(the box is clamped to the map, and at the map's own edges the zero padding is the same).
Cells outside are 0: finite, and multiplied by 0 downstream.

The outputs are the whole-map outputs up to float rounding (a convolution over a smaller map
may add in another order); the golden tests hold the evaluation copy to the authors' numbers.
Reading the box costs one host sync per forward, which is why training never uses it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.modules.multi_similarity import chained_mask_resize

Box = tuple[int, int, int, int]
"""(top, bottom, left, right) in cells of a feature map; bottom and right exclusive."""


def block_radius(block: nn.Module) -> int | None:
    """How many cells away one output of a residual block reads its input.

    The sum of ``dilation * (kernel - 1) / 2`` over the main path's convolutions (the shortcut
    must be 1x1). None when the block cannot be cut this way: not a residual block with
    ``forward_pre_activation``, a stride above 1, or padding other than "same".
    """
    if not hasattr(block, "forward_pre_activation"):
        return None
    radius = 0
    for name, module in block.named_modules():
        if not isinstance(module, nn.Conv2d):
            continue
        (kh, kw), (dh, dw), (sh, sw) = module.kernel_size, module.dilation, module.stride
        if (sh, sw) != (1, 1) or kh != kw or dh != dw or module.padding != (dh * (kh - 1) // 2,) * 2:
            return None
        if name.startswith("downsample"):
            if kh != 1:
                return None
            continue
        radius += dh * (kh - 1) // 2
    return radius


def stage_radii(stage: nn.Module) -> list[int] | None:
    """:func:`block_radius` of every block of a stage (an ``nn.Sequential``), or None."""
    if not isinstance(stage, nn.Sequential) or len(stage) == 0:
        return None
    radii = [block_radius(block) for block in stage]
    return None if any(r is None for r in radii) else radii  # type: ignore[return-value]


def needed_box(masks: Sequence[Tensor]) -> Box | None:
    """The smallest box holding every cell where any mask is positive, or None if none is.

    masks: tensors (N, 1, h, w) of one size (the resized support masks).
    """
    touched = torch.stack([(m > 0).any(dim=0)[0] for m in masks]).any(dim=0)  # (h, w)
    rows = touched.any(dim=1).nonzero().flatten().tolist()
    cols = touched.any(dim=0).nonzero().flatten().tolist()
    if not rows:
        return None
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


def grow(box: Box, by: int, size: tuple[int, int]) -> Box:
    """``box`` grown by ``by`` cells on every side, clamped to a map of ``size`` (h, w)."""
    top, bottom, left, right = box
    return (max(top - by, 0), min(bottom + by, size[0]), max(left - by, 0),
            min(right + by, size[1]))


def support_layer4_box(mask: Tensor, block_sizes: Sequence[tuple[int, int]], size: tuple[int, int]
                       ) -> Box | None:
    """The layer4 cells that the prior and multi-similarity read for these support masks.

    Args:
        mask: (N, 1, H, W) float support masks (1 = target) at image size.
        block_sizes: (h, w) of every block feature in the backbone's order, layer4's last (as
            multi-similarity's chained resize walks them).
        size: layer4's (h, w).
    """
    prior_mask = F.interpolate(mask, size=size, mode="bilinear", align_corners=True)
    chained = chained_mask_resize(mask, list(block_sizes))[-1]  # layer4's blocks share it
    return needed_box([prior_mask, chained])


def run_stage(stage: nn.Sequential, feat: Tensor, box: Box | None = None,
              radii: Sequence[int] | None = None) -> tuple[Tensor, list[Tensor]]:
    """A stride-1 residual stage, on the whole map or only where ``box`` needs it.

    Args:
        stage: the blocks (each with ``forward_pre_activation``).
        feat: (N, C_in, h, w) the stage's input.
        box: the cells whose outputs must be exact; None = all of them (the plain stage).
        radii: :func:`stage_radii` of ``stage`` (required with a box).

    Returns:
        ``(out, pres)``: the stage output and every block's pre-activation output, each
        (N, C, h, w); with a box, exact inside it and 0 outside.
    """
    pres: list[Tensor] = []
    if box is None:
        for block in stage:
            pre = block.forward_pre_activation(feat)
            pres.append(pre)
            feat = F.relu(pre)
        return feat, pres
    if radii is None or len(radii) != len(stage):
        raise ValueError("run_stage with a box needs the stage's block radii (stage_radii)")
    size = (feat.shape[-2], feat.shape[-1])
    # Crops are strided views; convolutions run fastest on the input's own dense layout.
    layout = (torch.channels_last if feat.is_contiguous(memory_format=torch.channels_last)
              and not feat.is_contiguous() else torch.contiguous_format)
    region = grow(box, sum(radii), size)
    x = feat[..., region[0]:region[1], region[2]:region[3]].contiguous(memory_format=layout)
    crops: list[tuple[Tensor, Box]] = []
    for j, block in enumerate(stage):
        pre = block.forward_pre_activation(x)
        exact = grow(box, sum(radii[j + 1:]), size)  # what the later blocks still read
        pre = pre[..., exact[0] - region[0]:exact[1] - region[0],
                  exact[2] - region[2]:exact[3] - region[2]]
        crops.append((pre, exact))
        region, x = exact, F.relu(pre).contiguous(memory_format=layout)

    def paste(t: Tensor, where: Box) -> Tensor:
        full = t.new_zeros(*t.shape[:2], *size).contiguous(memory_format=layout)
        full[..., where[0]:where[1], where[2]:where[3]] = t
        return full

    pres = [paste(t, where) for t, where in crops]
    return F.relu(pres[-1]), pres
