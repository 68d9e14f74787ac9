"""Parameter counts and state-dict layout of the authors' configurations (spec 1.12, 6)."""

from __future__ import annotations

from msanet_lib.model.msanet import MSANet, MSANetConfig

AUTHORS_TOP_LEVEL = [
    "layer0", "layer1", "layer2", "layer3", "layer4", "learner_base", "down_query", "down_supp",
    "init_merge", "ASPP_meta", "res1_meta", "res2_meta", "cls_meta", "gram_merge", "cls_merge",
    "kshot_rw", "gam", "hyper_final",
]  # fmt: skip


def _counts(model: MSANet) -> tuple[int, int]:
    params = list(model.parameters())
    return sum(p.numel() for p in params if p.requires_grad), sum(p.numel() for p in params)


def _top_level(model: MSANet) -> list[str]:
    seen: list[str] = []
    for key in model.state_dict():
        head = key.split(".")[0]
        if head not in seen:
            seen.append(head)
    return seen


def test_resnet50_counts_and_layout() -> None:
    one = MSANet(MSANetConfig("resnet50", shots=1))
    assert _counts(one) == (5_131_782, 51_845_590)
    assert len(one.state_dict()) == 394
    assert _top_level(one) == [n for n in AUTHORS_TOP_LEVEL if n != "kshot_rw"]
    per_module = {
        name: sum(p.numel() for p in getattr(one, name).parameters())
        for name in ("down_query", "init_merge", "ASPP_meta", "res1_meta", "res2_meta",
                     "cls_meta", "gam", "hyper_final", "learner_base")
    }  # fmt: skip
    assert per_module == {
        "down_query": 393_216, "init_merge": 213_248, "ASPP_meta": 1_901_824,
        "res1_meta": 327_680, "res2_meta": 1_179_648, "cls_meta": 590_338, "gam": 131_584,
        "hyper_final": 1_024, "learner_base": 23_082_000,
    }  # fmt: skip
    five = MSANet(MSANetConfig("resnet50", shots=5))
    assert _counts(five) == (5_131_782 + 27, 51_845_590 + 27)
    assert len(five.state_dict()) == 398 and _top_level(five) == AUTHORS_TOP_LEVEL
    assert five.state_dict()["init_merge.0.weight"].shape == (256, 833, 1, 1)


def test_resnet101_and_vgg_counts() -> None:
    r101 = MSANet(MSANetConfig("resnet101"))
    assert _counts(r101) == (5_132_870, 70_838_806)
    assert len(r101.state_dict()) == 700
    vgg = MSANet(MSANetConfig("vgg16_bn"))
    assert _counts(vgg) == (4_738_182, 24_452_310)
    assert len(vgg.state_dict()) == 155
    assert vgg.state_dict()["hyper_final.0.weight"].shape == (64, 7, 1, 1)
