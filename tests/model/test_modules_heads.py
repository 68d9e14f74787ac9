"""GAM, ASPP and the decoder builders: hand-computed values, branch order, authors' key names."""

from __future__ import annotations

import math

import torch
from torch import nn

from msanet_lib.modules.aspp import ASPP
from msanet_lib.modules.attention import Attention
from msanet_lib.modules.decoder import (
    classifier,
    feature_reduction,
    merge_block,
    residual_block,
)


def _set_identity_gate(att: Attention, bias2: float) -> None:
    with torch.no_grad():
        for idx in (0, 2):
            att.gate[idx].weight.copy_(torch.eye(2).reshape(2, 2, 1, 1))
            att.gate[idx].bias.zero_()
        att.gate[2].bias.fill_(bias2)


def test_gam_hand_computed() -> None:
    att = Attention(2).eval()
    _set_identity_gate(att, 0.5)
    feat = torch.tensor([[[1.0, 2.0], [3.0, 4.0]], [[-1.0, 0.0], [2.0, 2.0]]]).reshape(1, 2, 2, 2)
    # full-resolution mask 4x4; legacy nearest to 2x2 picks rows/cols 0 and 2
    mask = torch.zeros(1, 1, 4, 4)
    mask[0, 0, 0, 0] = 1  # -> (0, 0) kept
    mask[0, 0, 2, 2] = 1  # -> (1, 1) kept
    mask[0, 0, 1, 1] = 1  # dropped by nearest
    pooled = torch.tensor([(1.0 + 4.0) / 4, (-1.0 + 2.0) / 4])  # mean over ALL 4 pixels
    g = torch.sigmoid(torch.relu(pooled) + 0.5)
    out = att(feat, mask)
    assert torch.allclose(out, g.reshape(1, 2, 1, 1) * feat)


def test_gam_dropout_only_in_training() -> None:
    torch.manual_seed(0)
    att = Attention(8)
    feat, mask = torch.randn(4, 8, 3, 3), torch.ones(4, 1, 6, 6)
    att.eval()
    assert torch.equal(att(feat, mask), att(feat, mask))
    att.train()
    assert not torch.equal(att(feat, mask), att(feat, mask))
    assert [k for k in att.state_dict()] == ["gate.0.weight", "gate.0.bias", "gate.2.weight", "gate.2.bias"]


def test_aspp_names_order_and_init() -> None:
    torch.manual_seed(0)
    aspp = ASPP(16)
    names = [n for n, _ in aspp.named_children()]
    assert names == [f"layer6_{i}" for i in range(5)]
    assert aspp.layer6_2[0].dilation == (6, 6) and aspp.layer6_4[0].padding == (18, 18)
    x = torch.randn(2, 16, 9, 9)
    out = aspp(x)
    assert out.shape == (2, 80, 9, 9)
    # branch 0 is image-level: constant over space and equal to conv(mean)
    expected0 = aspp.layer6_0(x.mean(dim=(2, 3), keepdim=True))
    assert torch.allclose(out[:, :16], expected0.expand(-1, -1, 9, 9))
    assert torch.allclose(out[:, 16:32], aspp.layer6_1(x))
    assert torch.allclose(out[:, 64:], aspp.layer6_4(x))
    big = ASPP(256)
    w = big.layer6_2[0].weight
    assert abs(w.std().item() - math.sqrt(2 / (256 * 9))) < 0.05 * math.sqrt(2 / (256 * 9))


def test_decoder_builders_match_authors_shapes() -> None:
    down = feature_reduction(1536, 256)
    assert down[0].weight.shape == (256, 1536, 1, 1) and down[0].bias is None
    assert isinstance(down[2], nn.Dropout2d) and down[2].p == 0.5
    assert merge_block(833)[0].weight.shape == (256, 833, 1, 1)
    assert merge_block(1280)[0].weight.shape == (256, 1280, 1, 1)
    res2 = residual_block(256)
    assert sorted(res2.state_dict()) == ["0.weight", "2.weight"]
    cls = classifier(256, 2)
    assert list(cls.state_dict()) == ["0.weight", "3.weight", "3.bias"]
    assert cls[3].weight.shape == (2, 256, 1, 1) and cls[2].p == 0.1
    n = sum(p.numel() for m in (down, merge_block(833), merge_block(1280), res2, cls) for p in m.parameters())
    assert n == 393_216 + 213_248 + 327_680 + 1_179_648 + 590_338
