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


def scratch_backbone_overrides() -> list[str]:
    """Stage 1 from random weights (no stage-0 pretraining), then a short stage 2 on it."""
    return ["base.init=scratch", "meta.base_learner=stage1", "meta.epochs=2"]


# --- Typical mistakes: each check must reject every function below. -------------------------

def stage_sizes_stride_32(h: int) -> tuple[int, int, int, int, int]:
    """Keeps the strides of layer3 and layer4 (a plain ResNet, output stride 32)."""
    stem = _conv_out(h, 3, 2, 1)
    layer0 = _conv_out(stem, 3, 2, 1)
    layer2 = _conv_out(layer0, 3, 2, 1)
    layer3 = _conv_out(layer2, 3, 2, 1)
    return layer0, layer0, layer2, layer3, _conv_out(layer3, 3, 2, 1)


def stage_sizes_exact_division(h: int) -> tuple[int, int, int, int, int]:
    """Divides by 4 and 8 exactly, forgetting the rounding of odd sizes (473 -> 118, not 119)."""
    return h // 4, h // 4, h // 8, h // 8, h // 8


def dilate_kernel_contiguous(w: torch.Tensor, d: int) -> torch.Tensor:
    """Puts the 3x3 taps next to each other in the centre instead of d pixels apart."""
    big = w.new_zeros(*w.shape[:2], 2 * d + 1, 2 * d + 1)
    big[..., d - 1:d + 2, d - 1:d + 2] = w
    return big


def rf_without_dilation_no_stride(model: nn.Module) -> list[int]:
    """Drops the jump: adds k - 1 per layer, as if no layer ever had a stride."""
    r, out = 1, []
    for stage in model.stages():
        for name, m in stage.named_modules():
            if "downsample" in name or not isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                continue
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            r += k - 1
        out.append(r)
    return out


def rf_without_dilation_keeps_dilation(model: nn.Module) -> list[int]:
    """Still multiplies by the dilation: the receptive fields *with* dilation."""
    r, j, out = 1, 1, []
    for stage in model.stages():
        for name, m in stage.named_modules():
            if "downsample" in name or not isinstance(m, (nn.Conv2d, nn.MaxPool2d)):
                continue
            k = m.kernel_size if isinstance(m.kernel_size, int) else m.kernel_size[0]
            s = m.stride if isinstance(m.stride, int) else m.stride[0]
            d = m.dilation if isinstance(m.dilation, int) else m.dilation[0]
            r += (k - 1) * d * j
            j *= s
        out.append(r)
    return out


def scratch_backbone_shipped_learner() -> list[str]:
    """Points stage 2 at the shipped base learner, so the scratch backbone is never used."""
    return ["base.init=scratch", "meta.base_learner=checkpoints/toy/fold0/msanet_1shot.pth",
            "meta.epochs=2"]


def scratch_backbone_long_stage2() -> list[str]:
    """Forgets to shorten stage 2 (the config's full schedule, not a brief experiment)."""
    return ["base.init=scratch"]


MISTAKES = {
    "stage_sizes": [stage_sizes_stride_32, stage_sizes_exact_division],
    "dilate_kernel": [dilate_kernel_contiguous],
    "rf_without_dilation": [rf_without_dilation_no_stride, rf_without_dilation_keeps_dilation],
    "scratch_backbone_overrides": [scratch_backbone_shipped_learner, scratch_backbone_long_stage2],
}
