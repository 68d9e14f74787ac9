"""Masked average pooling and the prior mask against hand values and naive loops."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from msanet_lib.modules.masked_pooling import masked_average_pooling
from msanet_lib.modules.prior import prior_mask


def test_map_hand_computed() -> None:
    feat = torch.tensor([[1.0, 2.0], [3.0, 4.0]]).reshape(1, 1, 2, 2)
    mask = torch.tensor([[1.0, 0.0], [1.0, 0.5]]).reshape(1, 1, 2, 2)
    # (1 + 3 + 0.5 * 4) / (2.5 + 5e-4)
    expected = 6.0 / 2.5005
    out = masked_average_pooling(feat, mask)
    assert out.shape == (1, 1, 1, 1)
    assert torch.allclose(out, torch.tensor(expected).reshape(1, 1, 1, 1))


def test_map_empty_mask_is_zero() -> None:
    feat = torch.randn(2, 3, 4, 4)
    out = masked_average_pooling(feat, torch.zeros(2, 1, 4, 4))
    assert torch.equal(out, torch.zeros(2, 3, 1, 1))


def _naive_prior(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    b, k, c, h, w = s.shape
    out = torch.zeros(b, k, 1, *size)
    for i in range(b):
        for j in range(k):
            mk = F.interpolate(m[i, j][None, None], size=(h, w), mode="bilinear", align_corners=True)[0, 0]
            sv = (s[i, j] * mk).reshape(c, -1)  # (C, HWs)
            qv = q[i].reshape(c, -1)
            cos = torch.zeros(sv.shape[1], qv.shape[1])
            for p in range(sv.shape[1]):
                cos[p] = (sv[:, p : p + 1] * qv).sum(0) / (sv[:, p].norm() * qv.norm(dim=0) + 1e-7)
            best = cos.max(0).values
            best = (best - best.min()) / (best.max() - best.min() + 1e-7)
            out[i, j, 0] = F.interpolate(
                best.reshape(1, 1, h, w), size=size, mode="bilinear", align_corners=True
            )[0, 0]
    return out


def test_prior_matches_naive_loop() -> None:
    torch.manual_seed(0)
    q = torch.randn(2, 8, 5, 5)
    s = torch.randn(2, 3, 8, 5, 5)
    m = (torch.rand(2, 3, 17, 17) > 0.5).float()
    out = prior_mask(q, s, m, (7, 7))
    assert out.shape == (2, 3, 1, 7, 7)
    assert torch.allclose(out, _naive_prior(q, s, m, (7, 7)), atol=1e-5)
    assert out.min() >= 0 and out.max() <= 1 + 1e-6


def test_prior_full_and_tiny_masks_match_naive_loop() -> None:
    torch.manual_seed(1)
    q = torch.randn(1, 6, 4, 4)
    s = torch.randn(1, 3, 6, 4, 4)
    m = torch.zeros(1, 3, 13, 13)
    m[0, 0] = 1  # no zero-mask pixel: the max must not see an extra 0
    m[0, 1, 6, 6] = 1  # a single pixel
    m[0, 2, :, :2] = 1
    assert torch.allclose(prior_mask(q, s, m, (4, 4)), _naive_prior(q, s, m, (4, 4)), atol=1e-5)


def test_prior_empty_mask_finite_zero() -> None:
    q = torch.randn(1, 4, 3, 3)
    s = torch.randn(1, 2, 4, 3, 3)
    out = prior_mask(q, s, torch.zeros(1, 2, 9, 9), (3, 3))
    assert torch.isfinite(out).all()
    assert torch.equal(out, torch.zeros_like(out))
