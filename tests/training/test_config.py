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


# The authors' files differ per fold only here (MSANet config/pascal/pascal_split{0-3}_*.yaml;
# every other key is the same in all four files of a backbone): (epochs, stop_interval).
AUTHORS_PER_FOLD = {
    "pascal_resnet50": [(200, 75), (500, 75), (500, 75), (500, 75)],
    "pascal_resnet101": [(200, 75), (200, 75), (500, 150), (200, 75)],
    "pascal_vgg16_bn": [(200, 75)] * 4,
    "coco_resnet50": [(50, 75)] * 4,
    "coco_resnet101": [(50, 75)] * 4,
}


@pytest.mark.parametrize("name", sorted(AUTHORS_PER_FOLD))
def test_each_fold_gets_the_authors_epochs_and_stop_interval(name: str) -> None:
    for fold, expected in enumerate(AUTHORS_PER_FOLD[name]):
        cfg = load_config(name, {"fold": fold}, fast=False)
        assert (cfg.meta.epochs, cfg.meta.stop_interval) == expected, (name, fold)
        # the record says which table the number came from, and survives a round trip
        assert config_from_dict(cfg.to_dict()) == cfg
    assert load_config(name, fast=False).fold == 0  # the file's own fold


def test_per_fold_record_and_command_line_overrides() -> None:
    cfg = load_config("pascal_resnet50", {"fold": 2}, fast=False)
    assert cfg.per_fold == {"meta.epochs": {"0": 200, "1": 500, "2": 500, "3": 500}}
    assert cfg.to_dict()["per_fold"] == cfg.per_fold
    # --set meta.epochs=3 replaces the table; --set meta.epochs.2=300 changes one fold
    assert load_config("pascal_resnet50", {"fold": 2, **parse_override("meta.epochs=3")},
                       fast=False).meta.epochs == 3
    one = load_config("pascal_resnet50", {"fold": 2, **parse_override("meta.epochs.2=300")},
                      fast=False)
    assert one.meta.epochs == 300 and one.per_fold["meta.epochs"]["1"] == 500
    # a string fold key (JSON) counts as that fold, not as a second entry
    assert load_config("toy", {"fold": 1, "meta": {"epochs": {"0": 4, "1": 5, "2": 6, "3": 7}}},
                       fast=False).meta.epochs == 5
    # the loader writes the record; one given as input is ignored, not trusted
    assert load_config("toy", {"per_fold": {"meta.epochs": {"0": 9}}}, fast=False).per_fold == {}


def test_per_fold_tables_are_checked() -> None:
    with pytest.raises(ConfigError, match=r"'meta\.epochs' gives no value for fold\(s\) 0, 2, 3"):
        load_config("toy", {"meta": {"epochs": {1: 300}}}, fast=False)
    with pytest.raises(ConfigError, match=r"'meta\.epochs' maps folds to values; 4 is not a fold"):
        load_config("toy", {"meta": {"epochs": {0: 1, 1: 1, 2: 1, 3: 1, 4: 1}}}, fast=False)
    with pytest.raises(ConfigError, match=r"'meta\.epochs\.3' expects int, got str 'many'"):
        load_config("toy", {"meta": {"epochs": {0: 1, 1: 1, 2: 1, 3: "many"}}}, fast=False)
    with pytest.raises(ConfigError, match=r"'meta\.base_lr' expects float"):
        load_config("toy", {"meta": {"base_lr": {0: 1, 1: 1, 2: 1, 3: 1}}}, fast=False)
    with pytest.raises(ConfigError, match=r"fold=5: folds are 0\.\.3"):
        load_config("pascal_resnet50", {"fold": 5}, fast=False)
    with pytest.raises(ConfigError, match=r"meta\.epochs=0 must be >= 1"):
        load_config("toy", {"fold": 3, "meta": {"epochs": {0: 1, 1: 1, 2: 1, 3: 0}}}, fast=False)


def test_data_section_and_its_errors() -> None:
    cfg = load_config("pascal_resnet50", fast=False)
    assert (cfg.data.regime, cfg.data.lists, cfg.data.base_annotations) == (
        "bam", None, "on_the_fly")
    pf = load_config("pascal_resnet50", parse_override("data.regime=pfenet"), fast=False)
    assert pf.data.regime == "pfenet" and config_from_dict(pf.to_dict()) == pf
    with pytest.raises(ConfigError, match=r"'data\.regime' expects one of 'bam' \| 'pfenet'"):
        load_config("toy", parse_override("data.regime=hsnet"))
    with pytest.raises(ConfigError, match=r"unknown config key 'regime' \(did you mean "
                                          r"'data\.regime'\?\)"):
        load_config("toy", parse_override("regime=pfenet"))
    with pytest.raises(ConfigError, match=r"data\.lists='': give a folder, or null"):
        load_config("toy", {"data": {"lists": ""}})
