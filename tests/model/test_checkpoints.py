"""Loading the authors' checkpoints and ImageNet weights: mappings, round trips, clear errors.

Nothing here downloads: torchvision-format weights are made locally from torchvision's model
definitions with random values.
"""

from __future__ import annotations

import warnings
from collections import OrderedDict
from pathlib import Path

import pytest
import torch
import torchvision
from torch import Tensor, nn

import msanet_lib.backbones.pretrained as pretrained
from msanet_lib.backbones import build_backbone
from msanet_lib.backbones.pretrained import load_imagenet_weights
from msanet_lib.model.checkpoints import load_authors_checkpoint
from msanet_lib.model.pspnet import PSPNet


def randomised(model: nn.Module, seed: int) -> nn.Module:
    """Give every tensor (also BN buffers) distinct random values so copies are detectable."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in model.state_dict().values():
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) + 0.1)
    return model


def bam_best_pth(model: PSPNet, *, ddp: bool = False) -> dict:
    """A BAM ``train_base.py`` checkpoint: BAM also registers ``encoder = Sequential(layer0..4)``."""
    state = OrderedDict(model.state_dict())
    for i in range(5):
        for k, v in getattr(model, f"layer{i}").state_dict().items():
            state[f"encoder.{i}.{k}"] = v
    if ddp:
        state = OrderedDict(("module." + k, v) for k, v in state.items())
    return {"state_dict": state, "epoch": 100}


def assert_same_tensors(a: dict[str, Tensor], b: dict[str, Tensor]) -> None:
    assert list(a) == list(b)
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=0, msg=k)


class TinyMSANetLike(nn.Module):
    """Synthetic stand-in with MSANet's top-level layout: backbone, learner_base, meta parts."""

    def __init__(self, num_classes: int = 5) -> None:
        super().__init__()
        source = PSPNet(backbone="resnet_toy", num_classes=num_classes)
        for i in range(5):
            setattr(self, f"layer{i}", getattr(source, f"layer{i}"))
        self.learner_base = nn.Sequential(source.ppm, source.cls)
        self.down_query = nn.Sequential(nn.Conv2d(96, 8, 1, bias=False))
        self.hyper_final = nn.Sequential(nn.Conv2d(6, 4, 1), nn.BatchNorm2d(4))


# ----------------------------------------------------------------------------- PSPNet files
@pytest.mark.parametrize("ddp", [False, True])
def test_bam_best_pth_round_trip_into_pspnet(tmp_path: Path, ddp: bool) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=5), 0)
    path = tmp_path / "best.pth"
    torch.save(bam_best_pth(src, ddp=ddp), path)
    dst = PSPNet(backbone="resnet_toy", num_classes=5)
    report = load_authors_checkpoint(dst, path)
    assert_same_tensors(dst.state_dict(), src.state_dict())
    assert report.file_format == "pspnet" and report.epoch == 100
    assert len(report.loaded) == len(dst.state_dict())
    assert all(k.startswith("encoder.") for k in report.ignored)
    assert len(report.ignored) == sum(k.startswith("layer") for k in dst.state_dict())
    assert report.prefixes_removed == (["module."] if ddp else [])
    assert not (report.missing or report.unexpected or report.mismatched)


def test_plain_state_dict_and_encoder_only_copy(tmp_path: Path) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=3), 1)
    torch.save(src.state_dict(), tmp_path / "plain.pth")
    dst = PSPNet(backbone="resnet_toy", num_classes=3)
    load_authors_checkpoint(dst, tmp_path / "plain.pth")
    assert_same_tensors(dst.state_dict(), src.state_dict())
    # A file that only kept BAM's encoder.* copy still fills layer0..4.
    only_encoder = {
        (f"encoder.{k[5]}.{k[7:]}" if k.startswith("layer") else k): v
        for k, v in src.state_dict().items()
    }
    torch.save({"state_dict": only_encoder}, tmp_path / "enc.pth")
    dst2 = PSPNet(backbone="resnet_toy", num_classes=3)
    load_authors_checkpoint(dst2, tmp_path / "enc.pth")
    assert_same_tensors(dst2.state_dict(), src.state_dict())


def test_diverging_encoder_duplicate_is_an_error(tmp_path: Path) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=3), 2)
    ckpt = bam_best_pth(src)
    ckpt["state_dict"]["encoder.0.0.weight"] = ckpt["state_dict"]["encoder.0.0.weight"] + 1
    torch.save(ckpt, tmp_path / "bad.pth")
    with pytest.raises(ValueError, match="encoder.0.0.weight and layer0.0.weight differ"):
        load_authors_checkpoint(PSPNet(backbone="resnet_toy", num_classes=3), tmp_path / "bad.pth")


def test_pspnet_file_into_msanet_like_module_loads_backbone_and_base_learner(tmp_path: Path) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=5), 3)
    torch.save(bam_best_pth(src, ddp=True), tmp_path / "best.pth")
    dst = TinyMSANetLike()
    meta_before = {k: v.clone() for k, v in dst.state_dict().items()
                   if k.startswith(("down_query", "hyper_final"))}
    report = load_authors_checkpoint(dst, tmp_path / "best.pth")
    state = dst.state_dict()
    for k, v in src.state_dict().items():
        ours = k.replace("ppm.", "learner_base.0.").replace("cls.", "learner_base.1.")
        torch.testing.assert_close(state[ours], v, rtol=0, atol=0)
    for k, v in meta_before.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    assert sorted(report.untouched) == sorted(meta_before)
    assert any("loaded only the backbone and the base learner" in n for n in report.notes)


def test_pspnet_file_into_the_real_msanet(tmp_path: Path) -> None:
    from msanet_lib.model.msanet import MSANet, MSANetConfig

    src = randomised(PSPNet(backbone="resnet_toy", num_classes=6), 4)
    torch.save(bam_best_pth(src), tmp_path / "best.pth")
    model = MSANet(MSANetConfig(backbone="resnet_toy", num_base_classes=6))
    meta_before = {k: v.clone() for k, v in model.state_dict().items()
                   if not k.startswith(("layer", "learner_base"))}
    report = load_authors_checkpoint(model, tmp_path / "best.pth")
    state = model.state_dict()
    for k, v in src.state_dict().items():
        ours = k.replace("ppm.", "learner_base.0.").replace("cls.", "learner_base.1.")
        torch.testing.assert_close(state[ours], v, rtol=0, atol=0)
    assert set(report.untouched) == set(meta_before)
    for k, v in meta_before.items():
        torch.testing.assert_close(state[k], v, rtol=0, atol=0)
    # The model still runs its backbone through the shared stages.
    assert model.layer4 is model._backbone.layer4

    # An ablated MSANet without base learner takes only the backbone from the file.
    ablated = MSANet(MSANetConfig(backbone="resnet_toy", num_base_classes=6, use_base_learner=False))
    report = load_authors_checkpoint(ablated, tmp_path / "best.pth")
    assert {k.split(".")[0] for k in report.ignored} == {"encoder", "ppm", "cls"}
    torch.testing.assert_close(ablated.layer2[1].conv2.weight, src.layer2[1].conv2.weight)


def test_bam_best_pth_loads_the_same_through_stage2_and_the_authors_loader(tmp_path: Path) -> None:
    """Stage 2's ``load_base_learner`` and ``load_authors_checkpoint`` share one renaming: a
    BAM ``best.pth`` (DDP prefix, ``encoder.*`` copy) gives MSANet the same tensors under the
    same names through both."""
    from msanet_lib.model.msanet import MSANet, MSANetConfig
    from msanet_lib.training.stage2 import load_base_learner

    src = randomised(PSPNet(backbone="resnet_toy", num_classes=6), 8)
    path = tmp_path / "best.pth"
    torch.save(bam_best_pth(src, ddp=True), path)
    config = MSANetConfig(backbone="resnet_toy", num_base_classes=6)
    torch.manual_seed(1)
    by_stage2 = MSANet(config)
    torch.manual_seed(1)
    by_authors = MSANet(config)
    load_base_learner(by_stage2, path)
    report = load_authors_checkpoint(by_authors, path)

    renamed = {k.replace("ppm.", "learner_base.0.").replace("cls.", "learner_base.1."): v
               for k, v in src.state_dict().items()}
    assert sorted(report.loaded) == sorted(renamed)
    assert report.prefixes_removed == ["module."] and report.file_format == "pspnet"
    assert sorted(report.ignored) == sorted(
        f"encoder.{k[5]}.{k[7:]}" for k in src.state_dict() if k.startswith("layer"))
    one, two = by_stage2.state_dict(), by_authors.state_dict()
    assert list(one) == list(two)
    for key in one:  # the file's tensors under the same names; the meta learner as initialised
        assert torch.equal(one[key], two[key]), key
        if key in renamed:
            assert torch.equal(one[key], renamed[key]), key


# ----------------------------------------------------------------------------- MSANet files
def test_msanet_checkpoint_round_trip_and_into_pspnet(tmp_path: Path) -> None:
    src = randomised(TinyMSANetLike(), 5)
    state = OrderedDict(("module." + k, v) for k, v in src.state_dict().items())
    torch.save({"state_dict": state, "epoch": torch.tensor(37)}, tmp_path / "train_epoch_37.pth")
    dst = TinyMSANetLike()
    report = load_authors_checkpoint(dst, tmp_path / "train_epoch_37.pth")
    assert_same_tensors(dst.state_dict(), src.state_dict())
    assert report.file_format == "msanet" and report.epoch == 37 and not report.untouched

    # The base learner of an MSANet file, extracted into a PSPNet.
    psp = PSPNet(backbone="resnet_toy", num_classes=5)
    report = load_authors_checkpoint(psp, tmp_path / "train_epoch_37.pth")
    for k, v in psp.state_dict().items():
        theirs = k.replace("ppm.", "learner_base.0.").replace("cls.", "learner_base.1.")
        torch.testing.assert_close(v, src.state_dict()[theirs], rtol=0, atol=0)
    assert sorted(report.ignored) == sorted(
        k for k in src.state_dict() if k.startswith(("down_query", "hyper_final"))
    )


def test_whole_pickled_model_needs_allow_pickle(tmp_path: Path) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=4), 6)
    torch.save(src, tmp_path / "pascal_split0_resnet50_0.6925.pt")
    dst = PSPNet(backbone="resnet_toy", num_classes=4)
    with pytest.raises(ValueError, match="allow_pickle=True"):
        load_authors_checkpoint(dst, tmp_path / "pascal_split0_resnet50_0.6925.pt")
    load_authors_checkpoint(dst, tmp_path / "pascal_split0_resnet50_0.6925.pt", allow_pickle=True)
    assert_same_tensors(dst.state_dict(), src.state_dict())


# ----------------------------------------------------------------------------- errors
def test_missing_file_names_the_path_and_the_download(tmp_path: Path) -> None:
    path = tmp_path / "initmodel" / "PSPNet" / "best.pth"
    with pytest.raises(FileNotFoundError) as err:
        load_authors_checkpoint(PSPNet(backbone="resnet_toy"), path)
    assert str(path) in str(err.value) and "MSANet README" in str(err.value)


@pytest.mark.parametrize("damage", ["truncated", "random", "empty", "text"])
def test_corrupt_files_are_reported(tmp_path: Path, damage: str) -> None:
    good = tmp_path / "good.pth"
    torch.save({"state_dict": PSPNet(backbone="resnet_toy", num_classes=3).state_dict()}, good)
    data = good.read_bytes()
    bad = tmp_path / "bad.pth"
    bad.write_bytes({
        "truncated": data[: len(data) // 2],
        "random": torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        .to(torch.uint8).numpy().tobytes(),
        "empty": b"",
        "text": b"<html>Sign in to OneDrive</html>",
    }[damage])
    with pytest.raises(ValueError, match="is not a PyTorch checkpoint or is truncated; re-download"):
        load_authors_checkpoint(PSPNet(backbone="resnet_toy", num_classes=3), bad)


def test_file_without_weights_is_reported(tmp_path: Path) -> None:
    torch.save({"epoch": 3, "best_miou": 0.5}, tmp_path / "meta.pth")
    with pytest.raises(ValueError, match="without model weights.*'epoch'"):
        load_authors_checkpoint(PSPNet(backbone="resnet_toy"), tmp_path / "meta.pth")


def test_mismatches_are_listed_by_name_with_counts(tmp_path: Path) -> None:
    src = PSPNet(backbone="resnet_toy", num_classes=61)  # a COCO base learner
    state = src.state_dict()
    state.pop("cls.4.bias")
    for i in range(12):
        state[f"extra.{i}.weight"] = torch.zeros(1)
    torch.save({"state_dict": state}, tmp_path / "coco.pth")
    dst = PSPNet(backbone="resnet_toy", num_classes=16)
    with pytest.raises(ValueError) as err:
        load_authors_checkpoint(dst, tmp_path / "coco.pth")
    msg = str(err.value)
    assert "1 missing key(s): cls.4.bias" in msg
    assert "12 unexpected key(s): extra.0.weight" in msg and "(+2 more)" in msg
    assert "1 shape mismatch(es): cls.4.weight (file (61, 512, 1, 1) vs model (16, 512, 1, 1))" in msg
    assert "strict=False" in msg

    before = dst.cls[4].weight.clone()
    with pytest.warns(UserWarning, match="shape mismatch"):
        report = load_authors_checkpoint(dst, tmp_path / "coco.pth", strict=False)
    assert [m[0] for m in report.mismatched] == ["cls.4.weight"]
    torch.testing.assert_close(dst.cls[4].weight, before)  # left as it was
    torch.testing.assert_close(dst.layer0[0].weight, src.layer0[0].weight)


def test_file_for_another_backbone_fails_clearly(tmp_path: Path) -> None:
    torch.save({"state_dict": PSPNet(backbone="resnet_toy").state_dict()}, tmp_path / "toy.pth")
    with torch.device("meta"):
        r50 = PSPNet(backbone="resnet50")
    with pytest.raises(ValueError, match="shape mismatch"):
        load_authors_checkpoint(r50, tmp_path / "toy.pth")


# ----------------------------------------------------------------------------- ImageNet weights
def to_authors_resnet_format(backbone: nn.Module) -> dict[str, Tensor]:
    """Our deep-stem keys written the way the authors' resnet*_v2.pth names them (+ fc)."""
    back = {v: k for k, v in pretrained.AUTHORS_STEM_TO_LAYER0.items()}
    out: dict[str, Tensor] = {}
    for key, value in backbone.state_dict().items():
        prefix = next((p for p in back if key.startswith(p)), None)
        out[back[prefix] + key[len(prefix):] if prefix else key] = value
    out["fc.weight"] = torch.zeros(1000, backbone.channels[4])
    out["fc.bias"] = torch.zeros(1000)
    return out


def test_authors_resnet_file_loads_every_tensor(tmp_path: Path) -> None:
    src = randomised(build_backbone("resnet_toy"), 7)
    authors = to_authors_resnet_format(src)
    assert {"conv1.weight", "bn3.running_var", "layer1.0.downsample.0.weight"} <= set(authors)
    torch.save(authors, tmp_path / "resnet_v2.pth")
    dst = build_backbone("resnet_toy")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a complete load does not warn
        report = load_imagenet_weights(dst, tmp_path / "resnet_v2.pth")
    assert report.file_format == "authors-resnet" and report.complete
    assert report.ignored == ["fc.weight", "fc.bias"]
    assert_same_tensors(dst.state_dict(), src.state_dict())


# Loading into tensors on the meta device copies nothing (torch warns); only keys/shapes count.
META_COPY = "ignore:for .*copying from a non-meta parameter:UserWarning"


@pytest.mark.filterwarnings(META_COPY)
def test_authors_resnet50_and_101_mapping_covers_the_whole_backbone() -> None:
    for name in ("resnet50", "resnet101"):
        with torch.device("meta"):
            backbone = build_backbone(name)
        authors = to_authors_resnet_format(backbone)
        assert {"conv1.weight", "conv3.weight", "bn3.bias", "fc.weight"} <= set(authors)
        report = load_imagenet_weights(backbone, authors)  # strict by default
        assert report.complete and len(report.loaded) == len(backbone.state_dict())
        assert report.ignored == ["fc.weight", "fc.bias"]


@pytest.mark.filterwarnings(META_COPY)
def test_torchvision_resnet50_loads_layer1_to_4_except_two_tensors() -> None:
    with torch.device("meta"):
        tv_state = torchvision.models.resnet50(weights=None).state_dict()
        dst = build_backbone("resnet50")
    with pytest.warns(UserWarning, match=r"NOT loaded.*layer0\.0\.weight"):
        report = load_imagenet_weights(dst, tv_state)
    assert report.file_format == "torchvision-resnet"
    assert report.mismatched == [
        ("layer1.0.conv1.weight", (64, 64, 1, 1), (64, 128, 1, 1)),
        ("layer1.0.downsample.0.weight", (256, 64, 1, 1), (256, 128, 1, 1)),
    ]
    # The deep stem: 3 convs + 3 BN x (weight, bias, running mean, running var).
    assert all(k.startswith("layer0.") for k in report.missing) and len(report.missing) == 15
    assert set(report.ignored) == {k for k in tv_state if k.startswith(("conv1", "bn1", "fc"))}
    stage_keys = [k for k in dst.state_dict() if k.startswith(("layer1", "layer2", "layer3", "layer4"))]
    assert report.loaded == [k for k in stage_keys if k not in {m[0] for m in report.mismatched}]
    assert len(report.loaded) == len(stage_keys) - 2 == 310


def test_torchvision_resnet_file_copies_values(tmp_path: Path) -> None:
    # Same mapping on real tensors, with a torchvision-layout file (7x7 stem) of toy widths.
    src = randomised(build_backbone("resnet_toy"), 9)
    tv_like = {k: v for k, v in src.state_dict().items() if not k.startswith("layer0.")}
    tv_like["conv1.weight"] = torch.zeros(32, 3, 7, 7)
    tv_like["bn1.weight"] = torch.ones(32)
    tv_like["fc.weight"] = torch.zeros(1000, 128)
    torch.save(tv_like, tmp_path / "tv.pth")
    dst = build_backbone("resnet_toy")
    stem_before = dst.layer0[0].weight.clone()
    with pytest.warns(UserWarning, match="layer0"):
        report = load_imagenet_weights(dst, tmp_path / "tv.pth")
    assert report.file_format == "torchvision-resnet"
    for k in report.loaded:
        torch.testing.assert_close(dst.state_dict()[k], src.state_dict()[k], rtol=0, atol=0)
    assert len(report.loaded) == sum(not k.startswith("layer0.") for k in src.state_dict())
    torch.testing.assert_close(dst.layer0[0].weight, stem_before)  # random init kept


def test_torchvision_vgg16_bn_maps_exactly() -> None:
    from torchvision.models.vgg import cfgs, make_layers

    features = randomised(make_layers(cfgs["D"], batch_norm=True), 10)
    tv_state = {f"features.{k}": v for k, v in features.state_dict().items()}
    tv_state["classifier.6.bias"] = torch.zeros(1000)
    dst = build_backbone("vgg16_bn")
    report = load_imagenet_weights(dst, tv_state, strict=True)
    assert report.file_format == "vgg16_bn" and report.ignored == ["classifier.6.bias"]
    assert len(report.loaded) == len(dst.state_dict())
    torch.testing.assert_close(dst.layer3[0].weight, features[24].weight, rtol=0, atol=0)
    torch.testing.assert_close(dst.layer4[7].running_mean, features[41].running_mean)
    torch.testing.assert_close(dst.layer0[4].bias, features[4].bias)


def test_torchvision_source_downloads_only_when_asked(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    src = randomised(build_backbone("resnet_toy"), 11)

    def fake_download(name: str) -> dict[str, Tensor]:
        calls.append(name)
        return to_authors_resnet_format(src)

    monkeypatch.setattr(pretrained, "_download_torchvision_state_dict", fake_download)
    dst = build_backbone("resnet_toy")
    load_imagenet_weights(dst, "torchvision")
    assert calls == ["resnet_toy"]
    assert_same_tensors(dst.state_dict(), src.state_dict())
    monkeypatch.undo()
    with pytest.raises(ValueError, match="no ImageNet weights for the backbone 'resnet_toy'"):
        load_imagenet_weights(build_backbone("resnet_toy"), "torchvision")


def test_imagenet_loader_errors(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError) as err:
        load_imagenet_weights(build_backbone("vgg16_bn"), tmp_path / "initmodel" / "vgg16_bn.pth")
    msg = str(err.value)
    assert "vgg16_bn.pth" in msg and "MSANet README" in msg and "vgg16_bn-6c64b313.pth" in msg
    vgg_state = {"features.0.weight": torch.zeros(64, 3, 3, 3)}
    with pytest.raises(ValueError, match="VGG16-bn weights but the backbone is resnet_toy"):
        load_imagenet_weights(build_backbone("resnet_toy"), vgg_state)
    with pytest.raises(ValueError, match="not a known ImageNet backbone layout"):
        load_imagenet_weights(build_backbone("resnet_toy"), {"head.weight": torch.zeros(2)})
    toy_as_authors = to_authors_resnet_format(build_backbone("resnet_toy"))
    with torch.device("meta"):
        r50 = build_backbone("resnet50")
    with pytest.raises(ValueError, match="nothing in <state dict> fits the resnet50 backbone"):
        load_imagenet_weights(r50, toy_as_authors)
    # A partly fitting file is an error when strict, a warning otherwise.
    partial = to_authors_resnet_format(build_backbone("resnet_toy"))
    del partial["layer4.1.conv2.weight"]
    with pytest.raises(ValueError, match="1 missing key.*layer4.1.conv2.weight.*strict=False"):
        load_imagenet_weights(build_backbone("resnet_toy"), partial)
    with pytest.warns(UserWarning, match="layer4.1.conv2.weight"):
        report = load_imagenet_weights(build_backbone("resnet_toy"), partial, strict=False)
    assert report.missing == ["layer4.1.conv2.weight"]


def test_default_source_is_the_authors_file_under_the_data_root(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MSANET_DATA", str(tmp_path))
    expected = tmp_path / "initmodel" / "resnet50_v2.pth"
    assert pretrained.default_imagenet_path("resnet50") == expected
    with pytest.raises(FileNotFoundError, match="resnet50_v2.pth.*source='torchvision'"):
        load_imagenet_weights(build_backbone("resnet50"))
    # resnet_toy's default is the toy world's shipped stage 0, not a file in the data root
    assert pretrained.default_imagenet_path("resnet_toy") == pretrained.TOY_PRETRAINED
    missing = tmp_path / "no_stage0.pth"
    monkeypatch.setattr(pretrained, "TOY_PRETRAINED", missing)
    with pytest.raises(FileNotFoundError, match="train_toy_models.py stage0"):
        load_imagenet_weights(build_backbone("resnet_toy"))


def test_stage1_pspnet_file_initialises_a_backbone(tmp_path: Path) -> None:
    src = randomised(PSPNet(backbone="resnet_toy", num_classes=3), 12)
    torch.save(bam_best_pth(src, ddp=True), tmp_path / "best.pth")
    dst = build_backbone("resnet_toy")
    report = load_imagenet_weights(dst, tmp_path / "best.pth", strict=True)
    assert report.file_format == "msanet"
    assert_same_tensors(dst.state_dict(), src.backbone.state_dict())
    assert all(k.startswith(("encoder.", "ppm.", "cls.")) for k in report.ignored)
