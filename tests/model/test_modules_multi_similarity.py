"""Multi-similarity: the chained mask resizes, the selection rule and the batched maps against
a naive per-sample, per-shot loop written like the authors' column selection."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from msanet_lib.modules.multi_similarity import (
    MultiSimilarity,
    block_similarity,
    chained_mask_resize,
    hyper_final_head,
    select_support_pixels,
)


def _interp(t: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)


def test_chain_reproduces_authors_sizes_and_values() -> None:
    mask = torch.zeros(1, 1, 473, 473)
    mask[..., 101:303, 150:251] = 1
    sizes = [(119, 119)] + [(60, 60)] * 13  # ResNet-50 feats at 473 px
    masks = chained_mask_resize(mask, sizes)
    expected_119 = _interp(_interp(mask, (238, 238)), (119, 119))
    expected_60 = _interp(expected_119, (60, 60))
    assert torch.equal(masks[0], expected_119)
    assert torch.equal(masks[1], expected_60)
    # a direct resize differs: the chain matters
    assert not torch.equal(_interp(mask, (60, 60)), expected_60)
    # equal-size levels share one tensor (one selection per resolution)
    assert all(m is masks[1] for m in masks[1:])


def test_selection_rule_hand_example() -> None:
    mask = torch.tensor([[0.0, 0.2, 1.0, 0.6, 1.0], [0.0, 0.0, 0.0, 0.0, 0.0]])
    index, valid, count = select_support_pixels(mask)
    # mean of positives = 2.8 / 4 = 0.7 -> keep pixels 2 and 4
    assert count.tolist() == [2, 0]
    assert index[0, :2].tolist() == [2, 4]
    assert valid.tolist() == [[True, True], [False, False]]


def _naive_block(q: torch.Tensor, s: torch.Tensor, m: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Per sample and shot, explicit column selection as in the authors' mask_feature."""
    b, k, c, h, w = s.shape
    out = torch.zeros(b, k, h, w)
    for i in range(b):
        qi = q[i].flatten(1)
        qn = qi / (qi.norm(dim=0, keepdim=True) + eps)
        for j in range(k):
            mi = m[i * k + j]
            fi = s[i, j].flatten(1) * mi
            if mi.sum() == 0:
                sel = torch.zeros(c, 1)
            else:
                sel = fi[:, mi >= mi[mi > 0].mean()]
            sn = sel / (sel.norm(dim=0, keepdim=True) + eps)
            out[i, j] = (qn.T @ sn).clamp(min=0).mean(dim=1).reshape(h, w)
    return out


def test_block_similarity_matches_naive_loop() -> None:
    torch.manual_seed(0)
    b, k, c, h, w = 2, 3, 6, 7, 7
    q = torch.randn(b, c, h, w)
    s = torch.randn(b, k, c, h, w)
    full = torch.zeros(b * k, 1, 29, 29)
    full[0, :, 3:20, 5:15] = 1
    full[1, :, 10:12, 10:29] = 1
    full[2, :, :, :] = 1
    full[3, :, 20:, 20:] = 1
    # sample 4 empty, sample 5 a single pixel
    full[5, :, 14, 14] = 1
    m = _interp(full, (h, w)).flatten(1)
    out = block_similarity(q, s, m, select_support_pixels(m))
    ref = _naive_block(q, s, m)
    assert out.shape == (b, k, h, w)
    assert torch.allclose(out, ref, atol=1e-6)
    assert torch.equal(out[1, 1], torch.zeros(h, w))  # empty mask -> zero map


@pytest.mark.parametrize("last_shot", [False, True])
def test_multisimilarity_groups_and_shot_rule(last_shot: bool) -> None:
    torch.manual_seed(1)
    b, k, size = 2, 2, 33
    # one skipped level at 9x9, layer2 group of 2 at 9x9, layer3 group of 2 and layer4 of 1 at 5x5
    shapes = [(4, 9), (4, 9), (5, 9), (6, 5), (6, 5), (8, 5)]
    qf = [torch.randn(b, c, n, n) for c, n in shapes]
    sf = [torch.randn(b, k, c, n, n) for c, n in shapes]
    mask = (torch.rand(b, k, size, size) > 0.6).float()
    ms = MultiSimilarity((2, 2, 1), shallow_group_from_last_shot=last_shot)
    out = ms(qf, sf, mask)
    assert out.shape == (b, 5, 5, 5)
    masks = chained_mask_resize(mask.reshape(b * k, 1, size, size), [(n, n) for _, n in shapes])
    per_level = []
    for lvl in range(1, 6):
        mm = masks[lvl].flatten(1)
        per_level.append(_naive_block(qf[lvl], sf[lvl], mm))  # (B, K, h, w)
    l2 = torch.stack(per_level[:2], 2)
    l2 = l2[:, -1] if last_shot else l2.mean(1)
    l2 = _interp(l2, (5, 5))
    l3 = torch.stack(per_level[2:4], 2).mean(1)
    l4 = torch.stack(per_level[4:], 2).mean(1)
    assert torch.allclose(out, torch.cat([l2, l3, l4], 1), atol=1e-6)


def test_multisimilarity_rejects_too_few_levels() -> None:
    ms = MultiSimilarity((2, 2, 1))
    feats = [torch.randn(1, 2, 3, 3)] * 3
    with pytest.raises(ValueError, match="feat_groups"):
        ms(feats, [f[:, None] for f in feats], torch.ones(1, 1, 9, 9))


def test_hyper_final_head_keys_and_shape() -> None:
    head = hyper_final_head(13, 64)
    keys = list(head.state_dict())
    assert keys[:2] == ["0.weight", "0.bias"] and keys[2].startswith("1.")
    assert head[0].weight.shape == (64, 13, 1, 1)
    assert head(torch.rand(2, 13, 4, 4)).shape == (2, 64, 4, 4)
