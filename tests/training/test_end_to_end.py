"""The `msanet-train` command end to end on a tiny toy run, then the evaluation reads its output."""

from __future__ import annotations

import csv
import math
from pathlib import Path

import pytest
import torch
import yaml

from msanet_lib.training.__main__ import main
from msanet_lib.training.checkpoint import load_checkpoint

from .conftest import TINY


@pytest.mark.slow
def test_train_command_then_evaluate(toy_root: Path, tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({"extends": "toy", "data_root": str(toy_root),
                                      "out": str(out), **TINY}))
    assert main(["--config", str(config), "--shots", "1"]) == 0

    for stage in ("base", "meta_1shot"):
        folder = out / stage
        for name in ("last.pth", "best.pth", "export.pth", "curves.png", "done.json",
                     "log.jsonl", "iterations.csv"):
            assert (folder / name).is_file(), f"{stage}/{name} missing"
        with (folder / "log.csv").open() as handle:
            rows = list(csv.DictReader(handle))
        assert [int(r["epoch"]) for r in rows] == [1, 2]
        assert all(0.0 <= float(r["val_miou"]) <= 1.0 for r in rows)
        assert float(rows[0]["lr"]) > float(rows[1]["lr"])  # poly decay
    export = load_checkpoint(out / "meta_1shot" / "export.pth")
    assert export["model_config"]["shots"] == 1
    assert all(v.dtype == torch.float32 for v in export["state_dict"].values()
               if v.is_floating_point())

    # stage 2 really used the stage-1 weights, frozen
    base = load_checkpoint(out / "base" / "best.pth")["state_dict"]
    meta = load_checkpoint(out / "meta_1shot" / "last.pth")["state_dict"]
    assert torch.equal(base["layer3.0.conv1.weight"], meta["layer3.0.conv1.weight"])
    assert torch.equal(base["cls.4.weight"], meta["learner_base.1.4.weight"])

    # msanet-eval's reader rebuilds the model from the checkpoint
    from msanet_lib.evaluation.__main__ import read_checkpoint
    from msanet_lib.evaluation.protocol import evaluate
    from msanet_lib.model.msanet import MSANet, MSANetConfig
    from msanet_lib.training.config import load_config
    from msanet_lib.training.data import episode_dataset

    ckpt = read_checkpoint(out / "meta_1shot" / "best.pth")
    model = MSANet(MSANetConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["state_dict"])
    cfg = load_config(config, fast=False)
    result = evaluate(model, episode_dataset(cfg, "val", cfg.meta.image_size), episodes=4,
                      seeds=[510], progress=False)
    assert not math.isnan(result.mean_fb_iou)

    # a second run neither overwrites the first nor retrains what is finished
    assert main(["--config", str(config)]) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(["--config", str(config), "--resume"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_bad_config_key_fails_cleanly(capsys) -> None:
    assert main(["--set", "meta.learning_rate=0.1"]) == 2
    assert "unknown config key 'meta.learning_rate'" in capsys.readouterr().err
