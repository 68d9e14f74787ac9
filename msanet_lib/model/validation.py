"""Input checks for :class:`msanet_lib.model.msanet.MSANet` (clear errors instead of shape soup).

Every check raises ``ValueError`` naming the argument, what was received and what is expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

MASK_VALUES = (0, 1, 255)


def _require_tensor(name: str, value: object, expected: str) -> Tensor:
    if not isinstance(value, Tensor):
        raise ValueError(f"{name} must be a torch.Tensor of shape {expected}, got {type(value).__name__}")
    return value


def _require_ndim(name: str, t: Tensor, ndim: int, expected: str) -> None:
    if t.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions {expected}, got shape {tuple(t.shape)}")


def _require_label_dtype(name: str, t: Tensor) -> None:
    if t.dtype == torch.bool:
        # True/False cannot say "ignore": a 0/255 mask cast to bool turns its 255 border into
        # foreground without any error.
        raise ValueError(f"{name} is a bool tensor; pass integer labels 0/1 with 255 = ignore "
                         f"(for a plain binary mask: {name}.long())")
    if t.is_complex():
        raise ValueError(f"{name} must be an integer or float label tensor, got {t.dtype}")


def _require_finite(name: str, t: Tensor) -> None:
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        bad = int((~finite).sum())
        raise ValueError(f"{name} holds {bad} NaN or Inf value(s) of {t.numel()}; every output "
                         "would be NaN. Check how the images were loaded and normalised.")


def check_mask_values(name: str, t: Tensor, allowed: Sequence[int] = MASK_VALUES) -> None:
    """Raise if ``t`` holds values other than ``allowed`` (default 0, 1 and 255 = ignore)."""
    ok = torch.isin(t, torch.tensor(list(allowed), dtype=t.dtype, device=t.device))
    if not bool(ok.all()):
        bad = torch.unique(t[~ok])[:5].tolist()
        raise ValueError(
            f"{name} must only contain the values {tuple(allowed)} (255 = ignore), found e.g. {bad}; "
            "binarise the label for the episode class first (1 = class, 0 = background)"
        )


def validate_episode(
    x: Tensor,
    s_x: Tensor,
    s_y: Tensor,
    shots: int,
    y_m: Tensor | None = None,
    y_b: Tensor | None = None,
    cat_idx: object | None = None,
    num_base_classes: int | None = None,
    training: bool = False,
) -> Tensor | None:
    """Check one batch of episodes; return ``cat_idx`` as a (B,) long tensor (or None).

    Expected:
        x: (B, 3, H, W) floating query images.
        s_x: (B, K, 3, H, W) floating support images, K == ``shots``.
        s_y: (B, K, H, W) support labels with values 0/1/255 (integer or float dtype, not bool),
            with at least one foreground pixel in the batch when 255 pixels are present.
        x and s_x must be finite (NaN or Inf anywhere would make every output NaN).
        y_m: (B, H, W) binary query label 0/1/255 (required in training).
        y_b: (B, H, W) base-class label 0..num_base_classes-1 or 255 (optional).
        cat_idx: (B,) tensor of base-class indices, or the authors' ``[tensor]`` list
            (required in training when a base learner is used).
    """
    x = _require_tensor("x", x, "(B, 3, H, W)")
    _require_ndim("x", x, 4, "(B, 3, H, W)")
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating tensor (normalised image), got {x.dtype}")
    b, c, h, w = x.shape
    if c != 3:
        raise ValueError(f"x must have 3 channels (B, 3, H, W), got shape {tuple(x.shape)}")
    s_x = _require_tensor("s_x", s_x, f"(B, K, 3, H, W) = ({b}, {shots}, 3, {h}, {w})")
    expected_sx = (b, shots, 3, h, w)
    _require_ndim("s_x", s_x, 5, f"(B, K, 3, H, W) = {expected_sx}")
    if not s_x.is_floating_point():
        raise ValueError(f"s_x must be a floating tensor (normalised images), got {s_x.dtype}")
    if s_x.shape[1] != shots:
        raise ValueError(
            f"s_x has {s_x.shape[1]} shots but the model was built for shots={shots}; "
            f"expected shape {expected_sx}"
        )
    if tuple(s_x.shape) != expected_sx:
        raise ValueError(
            f"s_x must have shape (B, K, 3, H, W) = {expected_sx} (same batch and size as x), "
            f"got {tuple(s_x.shape)}"
        )
    s_y = _require_tensor("s_y", s_y, f"(B, K, H, W) = ({b}, {shots}, {h}, {w})")
    _require_label_dtype("s_y", s_y)
    if tuple(s_y.shape) != (b, shots, h, w):
        raise ValueError(
            f"s_y must have shape (B, K, H, W) = {(b, shots, h, w)} (one mask per support image), "
            f"got {tuple(s_y.shape)}"
        )
    check_mask_values("s_y", s_y)
    _require_finite("x", x)
    _require_finite("s_x", s_x)
    if not bool((s_y == 1).any()) and bool((s_y == 255).any()):
        raise ValueError(
            "s_y has no foreground pixel (1) but has 255 pixels, which mean 'ignore': is it a "
            "0/255 mask? Use 1 for the object (e.g. (mask == 255).long()), 255 only for pixels "
            "to ignore."
        )
    if y_m is not None:
        y_m = _require_tensor("y_m", y_m, f"(B, H, W) = {(b, h, w)}")
        _require_label_dtype("y_m", y_m)
        if tuple(y_m.shape) != (b, h, w):
            raise ValueError(f"y_m must have shape (B, H, W) = {(b, h, w)}, got {tuple(y_m.shape)}")
        check_mask_values("y_m", y_m)
    elif training:
        raise ValueError("y_m (B, H, W) query label is required in training mode")
    if y_b is not None:
        y_b = _require_tensor("y_b", y_b, f"(B, H, W) = {(b, h, w)}")
        _require_label_dtype("y_b", y_b)
        if tuple(y_b.shape) != (b, h, w):
            raise ValueError(f"y_b must have shape (B, H, W) = {(b, h, w)}, got {tuple(y_b.shape)}")
        if num_base_classes is not None:
            check_mask_values("y_b", y_b, [*range(num_base_classes), 255])
    if cat_idx is None:
        return None
    idx = cat_idx[0] if isinstance(cat_idx, (list, tuple)) else cat_idx
    if not isinstance(idx, Tensor):
        idx = torch.as_tensor(idx)
    if idx.ndim == 0:
        idx = idx.reshape(1)
    if idx.ndim != 1 or idx.shape[0] != b or idx.is_floating_point() or idx.is_complex():
        raise ValueError(
            f"cat_idx must be a ({b},) integer tensor (or a list whose element 0 is one) of "
            f"0-based base-class indices, got {tuple(idx.shape)} {idx.dtype}"
        )
    if num_base_classes is not None and bool(((idx < 0) | (idx >= num_base_classes - 1)).any()):
        raise ValueError(
            f"cat_idx values must lie in 0..{num_base_classes - 2} (index into the base-class list, "
            f"background excluded), got {idx.tolist()}"
        )
    return idx.long()
