"""Stage 0 (the toy world's ImageNet): its data, its network, and the command end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from msanet_lib.backbones import build_backbone
from msanet_lib.backbones.pretrained import TOY_PRETRAINED, load_imagenet_weights
from msanet_lib.data.toy import CHUNK, generate_chunk, pretrain_combinations, toy_classes
from msanet_lib.data.toy_pretrain import AttributeDataset, attribute_table
from msanet_lib.data.transforms import test_transform
from msanet_lib.model.attribute_net import AttributeNet
from msanet_lib.training.__main__ import main
from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.config import ConfigError, load_config

from .conftest import TINY


def test_pretraining_world_never_shows_a_class_or_a_benchmark_image() -> None:
    combos = pretrain_combinations()
    classes = {(c.shape, c.pattern, c.hue) for c in toy_classes()}
    from msanet_lib.data.toy import HUES, PATTERNS, SHAPES

    named = {(SHAPES[s], PATTERNS[p], list(HUES)[h]) for s, p, h in combos}
    assert len(combos) == 125 - 20 and not named & classes
    # every attribute value still occurs
    assert {c[0] for c in combos} == {c[1] for c in combos} == {c[2] for c in combos} == set(range(5))
    bench, _, _ = generate_chunk(0, "train", 0)
    images, labels, _ = generate_chunk(0, "train", 0, world="pretrain")
    assert images.shape == (CHUNK, 128, 128, 3) and not np.array_equal(images, bench)
    values = set(np.unique(labels).tolist()) - {0, 255}
    assert values and max(values) <= len(combos)


def test_attribute_table_maps_labels_to_shape_pattern_hue() -> None:
    table = attribute_table()
    s, p, h = pretrain_combinations()[7]
    assert table[8].tolist() == [s + 1, p + 1, h + 1]
    assert table[0].tolist() == [0, 0, 0] and table[255].tolist() == [255, 255, 255]


def test_dataset_items_and_loss_is_the_mean_cross_entropy() -> None:
    data = AttributeDataset("val", 3, transform=test_transform(64))
    item = data[1]
    assert item["image"].shape == (3, 64, 64) and item["label"].shape == (64, 64)
    torch.manual_seed(0)
    logits = [torch.randn(2, 6, 5, 5) for _ in range(3)]
    targets = torch.randint(0, 6, (2, 3, 5, 5))
    targets[:, :, 0, 0] = 255
    expected = torch.stack([F.cross_entropy(lg, targets[:, a], ignore_index=255)
                            for a, lg in enumerate(logits)]).mean()
    assert torch.allclose(AttributeNet.loss(logits, targets), expected, atol=1e-6)
    # background down-weighted: torch's weighted mean, per attribute
    weight = torch.tensor([0.1, 1, 1, 1, 1, 1])
    weighted = torch.stack([F.cross_entropy(lg, targets[:, a], weight=weight, ignore_index=255)
                            for a, lg in enumerate(logits)]).mean()
    assert torch.allclose(AttributeNet.loss(logits, targets, 0.1), weighted, atol=1e-6)
    with pytest.raises(ValueError, match="count must be >= 1"):
        AttributeDataset("val", 0, transform=test_transform(64))


def test_shipped_stage0_loads_like_an_imagenet_file() -> None:
    """The toy backbone's default "ImageNet" file is the shipped stage-0 export, complete."""
    assert TOY_PRETRAINED.is_file(), "checkpoints/toy/stage0/resnet_toy.pth is shipped"
    report = load_imagenet_weights(build_backbone("resnet_toy"))
    assert report.source == str(TOY_PRETRAINED) and report.complete


@pytest.mark.slow
def test_pretrain_command_then_stage1_starts_from_it(toy_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"extends": "toy", "data_root": str(toy_root),
                                      "out": str(out), **TINY}))
    assert main(["--config", str(config), "--stage", "pretrain"]) == 0
    folder = out / "pretrain"
    for name in ("last.pth", "best.pth", "export.pth", "done.json", "log.csv"):
        assert (folder / name).is_file(), name
    rows = (folder / "log.csv").read_text().strip().splitlines()
    assert len(rows) == 1 + 2  # two epochs
    export = folder / "export.pth"
    backbone = build_backbone("resnet_toy")
    report = load_imagenet_weights(backbone, export)
    assert report.complete and any(k.startswith("head.") for k in report.ignored)

    # base.init=stage0: stage 1 starts from exactly these weights
    from msanet_lib.training.stage1 import build_base_stage

    cfg = load_config(config, {"base": {"init": str(export)}}, fast=False)
    spec, _ = build_base_stage(cfg, torch.device("cpu"))
    exported = load_checkpoint(export)["state_dict"]
    own = spec.model.state_dict()
    assert all(torch.equal(exported[k], own[k]) for k in own if k.startswith("layer"))
    assert main(["--config", str(config), "--stage", "base", "--set", "base.init=stage0"]) == 0
    # a resumed pretrain run is complete and is skipped
    assert main(["--config", str(config), "--stage", "pretrain", "--resume"]) == 0


def test_stage0_config_errors(toy_root: Path, tmp_path: Path, capsys) -> None:
    with pytest.raises(ConfigError, match="pretrain.train_images=0 must be >= 1"):
        load_config("toy", {"pretrain": {"train_images": 0}}, fast=False)
    with pytest.raises(ConfigError, match="unknown config key 'pretrain.images'"):
        load_config("toy", {"pretrain": {"images": 10}}, fast=False)
    with pytest.raises(ConfigError, match="pretrain.base_lr"):
        load_config("toy", {"pretrain": {"base_lr": 0}}, fast=False)
    # stage 1 asked to start from a stage 0 that was never run: a short message, exit 2
    code = main(["--stage", "base", "--out", str(tmp_path / "x"), "--set", "base.init=stage0",
                 "--set", f"data_root={toy_root}"])
    assert code == 2
    err = capsys.readouterr().err
    assert "msanet-train --stage pretrain" in err and "Traceback" not in err
