"""Worked solutions of notebook 01 · Backbones and features."""

from __future__ import annotations

import torch
from torch import nn


def _conv_out(h: int, k: int, s: int, p: int, d: int = 1) -> int:
    return (h + 2 * p - d * (k - 1) - 1) // s + 1


def stage_sizes(h: int) -> tuple[int, int, int, int, int]:
    """Sides of layer0..layer4 for a square input of side ``h`` (output stride 8)."""
    stem = _conv_out(h, 3, 2, 1)            # first stem conv, stride 2
    layer0 = _conv_out(stem, 3, 2, 1)       # max-pool 3/2, padding 1 (the other convs keep size)
    layer2 = _conv_out(layer0, 3, 2, 1)     # first 3x3 of layer2 has stride 2
    return layer0, layer0, layer2, layer2, layer2  # layer3/4: dilated, stride 1


def dilate_kernel(w: torch.Tensor, d: int) -> torch.Tensor:
    """(C_out, C_in, 3, 3) -> (C_out, C_in, 2d+1, 2d+1) with the taps d pixels apart."""
    big = w.new_zeros(*w.shape[:2], 2 * d + 1, 2 * d + 1)
    big[..., ::d, ::d] = w
    return big


def rf_without_dilation(model: nn.Module) -> list[int]:
    """Receptive fields after layer0..4 with every dilation set to 1."""
    r, j, out = 1, 1, []
    for stage in model.stages():
        for name, m in stage.named_modules():
            if "downsample" in name or not isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                continue
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            r += (k - 1) * j
            j *= s
        out.append(r)
    return out
