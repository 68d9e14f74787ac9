"""Gram estimate, ensemble, K-shot weights and losses against hand-computed values."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from msanet_lib.modules.ensemble import (
    base_foreground,
    ensemble,
    gram_matrix,
    merge_conv,
    scene_difference,
)
from msanet_lib.modules.kshot import kshot_reweighter, kshot_weights
from msanet_lib.modules.losses import msanet_losses


def test_gram_hand_computed() -> None:
    f = torch.tensor([[3.0, 4.0], [1.0, 0.0]]).reshape(1, 2, 1, 2)
    g = gram_matrix(f)
    # rows (3,4) norm 5 and (1,0) norm 1: cos = 3/5
    expected = torch.tensor([[25 / (25 + 1e-7), 3 / (5 + 1e-7)], [3 / (5 + 1e-7), 1 / (1 + 1e-7)]])
    assert torch.allclose(g[0], expected)


def test_scene_difference_matches_loop() -> None:
    torch.manual_seed(0)
    q, s = torch.randn(2, 4, 3, 3), torch.randn(2, 3, 4, 3, 3)
    out = scene_difference(q, s)
    assert out.shape == (2, 3, 1, 1)
    for i in range(2):
        for j in range(3):
            d = gram_matrix(q[i : i + 1]) - gram_matrix(s[i, j : j + 1])
            assert torch.allclose(out[i, j, 0, 0], d.norm() / torch.ones(4, 4).norm())
    assert torch.allclose(scene_difference(q, q[:, None]), torch.zeros(2, 1, 1, 1), atol=1e-6)


def test_base_foreground_excludes_episode_class() -> None:
    p = torch.tensor([0.1, 0.2, 0.3, 0.4]).reshape(1, 4, 1, 1).repeat(2, 1, 1, 1)
    assert torch.allclose(base_foreground(p)[:, 0, 0, 0], torch.tensor([0.9, 0.9]))
    out = base_foreground(p, torch.tensor([1, 3]))
    assert torch.allclose(out[:, 0, 0, 0], torch.tensor([0.7, 0.5]))


def test_ensemble_initial_state_is_meta_softmax_and_hand_values() -> None:
    torch.manual_seed(0)
    meta, base = torch.randn(2, 2, 3, 3), torch.randn(2, 5, 3, 3)
    est = torch.rand(2, 1, 1, 1)
    gm, cm = merge_conv(), merge_conv()
    assert gm.weight.flatten().tolist() == [1.0, 0.0]
    out = ensemble(meta, est, gm, cm, base)
    assert torch.allclose(out, meta.softmax(1))
    with torch.no_grad():
        gm.weight.copy_(torch.tensor([2.0, -1.0]).reshape(1, 2, 1, 1))
        cm.weight.copy_(torch.tensor([1.0, -3.0]).reshape(1, 2, 1, 1))
    out = ensemble(meta, est, gm, cm, base, exclude=torch.tensor([1, 2]))
    pm, pb = meta.softmax(1), base.softmax(1)
    keep = torch.ones(2, 5)
    keep[:, 0] = 0
    keep[0, 1] = 0
    keep[1, 2] = 0
    base_map = (pb * keep[:, :, None, None]).sum(1, keepdim=True)
    bg = 2 * pm[:, :1] - est - 3 * base_map
    fg = 2 * pm[:, 1:] - est
    assert torch.allclose(out, torch.cat([bg, fg], 1), atol=1e-6)
    no_base = ensemble(meta, est, gm)
    assert torch.allclose(no_base, torch.cat([2 * pm[:, :1] - est, fg], 1), atol=1e-6)


def test_kshot_identity_vs_bam_gather_hand_example() -> None:
    est = torch.tensor([0.3, 0.1, 0.2]).reshape(1, 3, 1, 1)

    class Scale(torch.nn.Module):  # a reweighter whose output is easy to follow: w = 10 * sorted
        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return 10 * v

    sorted_w = torch.tensor([1.0, 2.0, 3.0])  # 10 * [0.1, 0.2, 0.3]
    authors = kshot_weights(est, Scale(), "authors").flatten()
    bam = kshot_weights(est, Scale(), "bam").flatten()
    # authors: sorted weights applied in original shot order
    assert torch.allclose(authors, sorted_w.softmax(0))
    # bam: each shot gets the weight of its own psi -> [3, 1, 2]
    assert torch.allclose(bam, torch.tensor([3.0, 1.0, 2.0]).softmax(0))
    assert torch.allclose(kshot_weights(est[:, :1], None), torch.ones(1, 1, 1, 1))
    with pytest.raises(ValueError, match="kshot_order"):
        kshot_weights(est, Scale(), "sorted")


def test_kshot_reweighter_shapes_and_zero_dim_variant() -> None:
    rw = kshot_reweighter(5, 2)
    assert [tuple(v.shape) for v in rw.state_dict().values()] == [(2, 5, 1, 1), (2,), (5, 2, 1, 1), (5,)]
    assert sum(p.numel() for p in rw.parameters()) == 27
    flat = kshot_reweighter(4, 0)
    w = kshot_weights(torch.rand(3, 4, 1, 1), flat)
    assert torch.allclose(w, torch.full((3, 4, 1, 1), 0.25))


def test_losses_ignore_255() -> None:
    logits = torch.tensor([[2.0, 0.0], [0.0, 1.0], [5.0, -5.0]]).T.reshape(1, 2, 1, 3)
    target = torch.tensor([[[0, 1, 255]]])
    expected = (F.cross_entropy(logits[..., :2], target[..., :2]))
    base = torch.randn(1, 4, 1, 3)
    yb = torch.tensor([[[3, 255, 0]]])
    losses = msanet_losses(logits, logits, base, target, yb)
    assert torch.allclose(losses.main_loss, expected) and torch.allclose(losses.aux_loss1, expected)
    assert torch.allclose(losses.aux_loss2, F.cross_entropy(base[..., [0, 2]], yb[..., [0, 2]]))
    assert msanet_losses(logits, logits, None, target, None).aux_loss2.item() == 0.0
