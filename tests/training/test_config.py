"""Config loading: validation messages, `extends:`, `fast:`, and the authors' numbers."""

from __future__ import annotations

from pathlib import Path

import pytest

from msanet_lib.training.config import (
    CONFIG_DIR,
    ConfigError,
    config_from_dict,
    load_config,
    parse_override,
)

ALL_CONFIGS = sorted(p.stem for p in CONFIG_DIR.glob("*.yaml"))


def test_unknown_key_is_named_with_its_section(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("extends: toy\nmeta:\n  base_lr: 0.01\n  learning_rate: 0.01\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'meta\.learning_rate'.*base_lr"):
        load_config(path)


def test_wrong_type_names_key_and_expected_type(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text("extends: toy\nbase:\n  epochs: ten\n")
    with pytest.raises(ConfigError, match=r"'base\.epochs' expects int, got str 'ten'"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"'runtime\.amp' expects one of 'none' \| 'bf16'"):
        load_config("toy", {"runtime": {"amp": "fp8"}})
    with pytest.raises(ConfigError, match=r"'model\.use_attention' expects bool"):
        load_config("toy", {"model": {"use_attention": 1}})  # 1 is not a bool
    with pytest.raises(ConfigError, match=r"'meta' expects a mapping"):
        load_config("toy", {"meta": 3})
    with pytest.raises(ConfigError, match="fold=7"):
        load_config("toy", {"fold": 7})


def test_ints_are_accepted_for_floats_and_overrides_parse_as_yaml() -> None:
    cfg = load_config("toy", {"meta": {"base_lr": 1}, **parse_override("base.epochs=3")})
    assert cfg.meta.base_lr == 1.0 and isinstance(cfg.meta.base_lr, float)
    assert cfg.base.epochs == 3
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("meta.epochs")


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_every_shipped_config_loads_and_round_trips(name: str) -> None:
    cfg = load_config(name, fast=False)
    assert cfg.name == name
    assert config_from_dict(cfg.to_dict()) == cfg
    assert cfg.model_config().shots == cfg.shots


def test_pascal_resnet50_is_the_authors_recipe() -> None:
    """`--config pascal_resnet50 --fold 0 --shots 1` (spec §3; BAM/MSANet yaml files)."""
    cfg = load_config("pascal_resnet50", {"fold": 0, "shots": 1}, fast=False)
    m, b = cfg.meta, cfg.base
    assert (cfg.benchmark, cfg.fold, cfg.shots, cfg.seed) == ("pascal", 0, 1, 321)
    assert (cfg.model.backbone, cfg.model.num_base_classes, cfg.model.fix_bn) == ("resnet50", 16, True)
    assert (cfg.model.reduce_dim, cfg.model.hyper_dim, cfg.model.base_hidden) == (256, 64, 512)
    assert (m.epochs, m.batch_size, m.image_size, m.base_lr, m.index_split, m.scale_lr) == (
        200, 8, 473, 0.005, -1, 10.0)
    assert (m.momentum, m.weight_decay, m.power, m.stop_interval) == (0.9, 1e-4, 0.9, 75)
    assert (m.scale_min, m.scale_max, m.rotate_min, m.rotate_max) == (0.9, 1.1, -10, 10)
    assert (m.aux_weight1, m.aux_weight2, m.val_episodes, m.val_seed) == (1.0, 1.0, 1000, 321)
    assert not m.val_half_epoch
    assert (b.epochs, b.batch_size, b.image_size, b.base_lr, b.index_split) == (
        100, 12, 417, 2.5e-4, 0)
    assert (b.scale_min, b.scale_max, b.init) == (0.5, 2.0, "imagenet")


def test_coco_and_extends_chains() -> None:
    coco = load_config("coco_resnet101", {"fold": 3, "shots": 5}, fast=False)
    assert (coco.model.backbone, coco.model.num_base_classes, coco.fold, coco.shots) == (
        "resnet101", 61, 3, 5)
    assert (coco.meta.epochs, coco.meta.image_size, coco.meta.scale_min, coco.meta.scale_max) == (
        50, 641, 0.8, 1.25)
    assert coco.meta.val_half_epoch and coco.base.index_split == -1 and coco.base.epochs == 20
    vgg = load_config("pascal_vgg16_bn", fast=False)
    assert vgg.model.backbone == "vgg16_bn" and vgg.runtime.workers == 0
    assert vgg.meta == load_config("pascal_resnet50", fast=False).meta


def test_fast_section_applies_only_in_fast_mode(monkeypatch) -> None:
    full, fast = load_config("toy", fast=False), load_config("toy", fast=True)
    assert fast.meta.epochs < full.meta.epochs
    assert fast.meta.val_episodes < full.meta.val_episodes
    monkeypatch.setenv("MSANET_FAST", "1")
    assert load_config("toy") == fast


def test_missing_config_and_extends_loop(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="pascal_resnet50"):
        load_config("no_such_config")
    (tmp_path / "a.yaml").write_text("extends: b\n")
    (tmp_path / "b.yaml").write_text("extends: a\n")
    with pytest.raises(ConfigError, match="loop"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "c.yaml").write_text("extends: toy\nmodel:\n  shots: 5\n")
    with pytest.raises(ConfigError, match="model.shots"):
        load_config(tmp_path / "c.yaml")


@pytest.mark.parametrize("name", ALL_CONFIGS)
def test_every_config_states_its_validation_budget(name: str) -> None:
    """Both stages' validation cost is written in the file (inherited through `extends:`)."""
    from msanet_lib.training.config import load_raw

    raw = load_raw(name)
    assert "max_val_images" in raw["base"] and "val_episodes" in raw["meta"]
    cfg = load_config(name, fast=False)
    if cfg.benchmark == "coco":  # ~40k val images: an unbounded stage-1 validation is hours
        assert cfg.base.max_val_images is not None and cfg.base.max_val_images <= 10_000
    with pytest.raises(ConfigError, match="max_val_images"):
        load_config(name, {"base": {"max_val_images": 0}}, fast=False)
