"""The support's layer4 on the box its readers see: exact inside, zero outside, and the box is
what the prior's and multi-similarity's resized masks touch."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from msanet_lib.backbones import build_backbone
from msanet_lib.backbones.resnet import BasicBlock, Bottleneck, _make_stage
from msanet_lib.model.support_region import (
    block_radius,
    grow,
    needed_box,
    run_stage,
    stage_radii,
    support_layer4_box,
)
from msanet_lib.modules.multi_similarity import chained_mask_resize


def test_block_radius_is_the_sum_of_the_dilations_of_its_3x3_convolutions() -> None:
    assert block_radius(Bottleneck(64, 16, dilation=4)) == 4
    assert block_radius(BasicBlock(16, 16, dilation=2)) == 4  # two dilated 3x3 convs
    assert block_radius(Bottleneck(64, 16, stride=2)) is None  # a strided block cannot be cut
    assert block_radius(torch.nn.Conv2d(3, 3, 3, padding=1)) is None  # not a residual block
    assert stage_radii(build_backbone("resnet50").layer4) == [4, 4, 4]
    assert stage_radii(build_backbone("vgg16_bn").layer4) is None


def test_needed_box_and_grow_by_hand() -> None:
    a = torch.zeros(2, 1, 10, 12)
    a[0, 0, 2, 3] = 0.1
    a[1, 0, 6, 5] = 1.0
    b = torch.zeros(1, 1, 10, 12)
    b[0, 0, 4, 9] = 0.5
    assert needed_box([a, b]) == (2, 7, 3, 10)
    assert needed_box([torch.zeros(3, 1, 5, 5)]) is None
    assert grow((2, 7, 3, 10), 3, (10, 12)) == (0, 10, 0, 12)
    assert grow((4, 6, 4, 6), 1, (10, 12)) == (3, 7, 3, 7)


def test_the_box_holds_every_cell_either_resized_mask_touches() -> None:
    mask = torch.zeros(3, 1, 473, 473)
    mask[0, 0, 94:236, 157:315] = 1
    mask[2, 0, 400:410, 20:30] = 1
    sizes = [(119, 119)] + [(60, 60)] * 13  # ResNet-50 blocks from layer1's last
    box = support_layer4_box(mask, sizes, (60, 60))
    assert box is not None
    top, bottom, left, right = box
    outside = torch.ones(60, 60, dtype=torch.bool)
    outside[top:bottom, left:right] = False
    prior = F.interpolate(mask, size=(60, 60), mode="bilinear", align_corners=True)
    chained = chained_mask_resize(mask, sizes)[-1]
    for resized in (prior, chained):
        assert not (resized[:, 0][:, outside] > 0).any()
    # and it is the smallest such box: every edge row/column is touched by one of them
    touched = ((prior > 0) | (chained > 0)).any(dim=0)[0]
    assert touched[top].any() and touched[bottom - 1].any()
    assert touched[:, left].any() and touched[:, right - 1].any()


@pytest.mark.parametrize("block,channels", [(Bottleneck, 32), (BasicBlock, 8)])  # + shortcut conv
@pytest.mark.parametrize("box", [(20, 31, 9, 18), (0, 5, 33, 40), (0, 40, 0, 40)])
def test_a_stage_on_a_box_equals_the_whole_map_inside_and_is_zero_outside(
        block, channels, box) -> None:
    torch.manual_seed(0)
    stage, _ = _make_stage(block, channels, 16, 3, 1, 4)  # layer4-like: stride 1, dilation 4
    stage.eval()
    feat = torch.randn(2, channels, 40, 40)
    with torch.no_grad():
        whole, whole_pres = run_stage(stage, feat)
        out, pres = run_stage(stage, feat, box, stage_radii(stage))
    top, bottom, left, right = box
    inside = (..., slice(top, bottom), slice(left, right))
    for got, want in [(out, whole)] + list(zip(pres, whole_pres)):
        assert got.shape == want.shape
        torch.testing.assert_close(got[inside], want[inside], rtol=1e-5, atol=1e-5)
    for got in (out, pres[-1]):  # the stage's own outputs are 0 outside the box
        rest = got.clone()
        rest[inside] = 0
        assert rest.abs().max() == 0
    # the earlier blocks' outputs are exact on a larger region (what later blocks read)
    grown = grow(box, 8 if block is Bottleneck else 16, (40, 40))
    g = (..., slice(grown[0], grown[1]), slice(grown[2], grown[3]))
    torch.testing.assert_close(pres[0][g], whole_pres[0][g], rtol=1e-5, atol=1e-5)


def test_run_stage_with_a_box_needs_the_radii() -> None:
    stage, _ = _make_stage(Bottleneck, 64, 16, 2, 1, 4)
    with pytest.raises(ValueError, match="radii"):
        run_stage(stage, torch.zeros(1, 64, 8, 8), (0, 2, 0, 2))


@pytest.mark.parametrize("box_rows", [(8, 20), (0, 0)], ids=["object", "empty mask"])
def test_the_evaluation_copy_gives_the_same_outputs_with_fewer_operations(box_rows) -> None:
    from torch.utils.flop_counter import FlopCounterMode

    from msanet_lib.model.inference import prepare_for_inference
    from msanet_lib.model.msanet import MSANet, MSANetConfig

    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet_toy", shots=2)).eval()
    whole = prepare_for_inference(model, support_layer4_box=False)
    boxed = prepare_for_inference(model, support_layer4_box=True)
    assert boxed._layer4_radii is not None and whole._layer4_radii is None
    assert prepare_for_inference(model)._layer4_radii is None  # a narrow layer4: not worth it
    g = torch.Generator().manual_seed(1)
    x, s_x = torch.randn(2, 3, 97, 97, generator=g), torch.randn(2, 2, 3, 97, 97, generator=g)
    s_y = torch.zeros(2, 2, 97, 97, dtype=torch.long)
    s_y[..., box_rows[0]:box_rows[1], 30:50] = 1
    if box_rows[1] > box_rows[0]:
        s_y[:, :, 90:] = 255  # (an empty mask with ignore pixels is refused as a 0/255 mask)
    flops = {}
    outs = {}
    for name, net in (("whole", whole), ("boxed", boxed)):
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            outs[name] = net(x, s_x, s_y)
        flops[name] = counter.get_total_flops()
    for a, b in zip(outs["boxed"], outs["whole"]):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    if box_rows[1] > box_rows[0]:
        assert flops["boxed"] < flops["whole"]  # the toy's layer4 is a small part of it
    else:  # an empty support mask: nothing to cut, the whole map is computed
        assert flops["boxed"] == flops["whole"]
