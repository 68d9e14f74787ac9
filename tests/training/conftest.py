"""A small toy benchmark (generated once per session) and tiny training configs."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from msanet_lib.training.config import TrainConfig, deep_merge, load_config

TINY: dict[str, Any] = {
    "pretrain": {"epochs": 2, "batch_size": 4, "image_size": 48, "train_images": 8,
                 "val_images": 4, "head_hidden": 8},
    "base": {"epochs": 2, "batch_size": 4, "image_size": 48, "samples_per_epoch": 8,
             "max_val_images": 4, "val_batch_size": 4},
    "meta": {"epochs": 2, "batch_size": 4, "image_size": 48, "samples_per_epoch": 12,
             "val_episodes": 4},
    "model": {"reduce_dim": 16, "hyper_dim": 8, "base_hidden": 16},
    "runtime": {"device": "cpu", "workers": 0, "progress": False, "log_every": 1},
}


@pytest.fixture(scope="session")
def toy_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 128-train / 64-val toy benchmark (a few seconds to generate)."""
    from msanet_lib.data.toy import ensure_toy_benchmark

    return ensure_toy_benchmark(tmp_path_factory.mktemp("data") / "toy",
                                sizes={"train": 128, "val": 64})


@pytest.fixture
def tiny_config(toy_root: Path, tmp_path: Path) -> Callable[..., TrainConfig]:
    """``tiny_config(**overrides)``: the toy config shrunk to seconds, writing to tmp_path."""

    def make(**overrides: Any) -> TrainConfig:
        base = deep_merge(TINY, {"data_root": str(toy_root), "out": str(tmp_path / "run")})
        return load_config("toy", deep_merge(base, overrides), fast=False)

    return make
