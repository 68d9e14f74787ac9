"""Worked solutions of notebook 05 · The attention module (GAM), and the typical mistakes
(``MISTAKES``) that each exercise's check must reject."""

from __future__ import annotations

import torch
import torch.nn.functional as F


# ----------------------------------------------------------------------------- warm-up
def drop_gate(logits: torch.Tensor, keep: torch.Tensor, p: float = 0.5) -> torch.Tensor:
    """Training-mode gate for a given dropout pattern: sigmoid(keep * logits / (1 - p))."""
    return torch.sigmoid(logits * keep.to(logits.dtype) / (1 - p))


def _drop_after_sigmoid(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Applies the dropout after the sigmoid: dropped gates become 0, kept ones double."""
    return torch.sigmoid(logits) * keep.to(logits.dtype) * 2


def _drop_without_rescale(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Forgets the 1 / (1 - p) scaling of the kept logits."""
    return torch.sigmoid(logits * keep.to(logits.dtype))


def _drop_switches_off(logits: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """Treats a dropped channel as switched off (gate 0) instead of sigmoid(0) = 0.5."""
    return torch.where(keep, torch.sigmoid(2 * logits), torch.zeros_like(logits))


# ----------------------------------------------------------------------------- variant
def gate_input_normalised(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w), (N, 1, H, W) -> (N, C, 1, 1): average over the mask pixels only."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    area = m.sum(dim=(2, 3), keepdim=True)
    return (feat * m).sum(dim=(2, 3), keepdim=True) / area.clamp(min=1)


def _normalised_by_all_pixels(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Still divides by all h * w pixels: that is GAM itself, not the variant."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    return (feat * m).mean(dim=(2, 3), keepdim=True)


def _normalised_by_image_area(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Counts the mask pixels at image resolution (64 times too many at stride 8)."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    return (feat * m).sum(dim=(2, 3), keepdim=True) / mask.sum(dim=(2, 3), keepdim=True).clamp(min=1)


def _normalised_no_clamp(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Does not guard the empty mask: 0 / 0 gives NaN."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="nearest")
    return (feat * m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True)


def _normalised_bilinear(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Resizes the mask bilinearly (the prototype's resize) instead of GAM's nearest."""
    m = F.interpolate(mask, size=feat.shape[-2:], mode="bilinear", align_corners=True)
    return (feat * m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True).clamp(min=1)


# ----------------------------------------------------------------------------- experiment
def no_attention() -> dict:
    """`msanet-train --set` overrides: the model without GAM, nothing else changed."""
    return {"model.use_attention": False}


def _no_attention_without_section() -> dict:
    """Leaves out the config section: there is no top-level key `use_attention`."""
    return {"use_attention": False}


def _no_attention_wrong_switch() -> dict:
    """Switches off the multi-similarity module instead of the attention."""
    return {"model.use_multi_similarity": False}


def _no_attention_default() -> dict:
    """Writes the default back: GAM stays."""
    return {"model.use_attention": True}


MISTAKES = {
    "drop_gate": [_drop_after_sigmoid, _drop_without_rescale, _drop_switches_off],
    "gate_input_normalised": [_normalised_by_all_pixels, _normalised_by_image_area,
                              _normalised_no_clamp, _normalised_bilinear],
    "no_attention": [_no_attention_without_section, _no_attention_wrong_switch,
                     _no_attention_default],
}
