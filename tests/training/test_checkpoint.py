"""Checkpoints: round trip, exact RNG restore, atomic saves that survive a crash."""

from __future__ import annotations

import os
import random
from pathlib import Path

import numpy as np
import pytest
import torch

from msanet_lib.training import checkpoint as ck


def _save(path: Path, value: float) -> Path:
    model = torch.nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.fill_(value)
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    model(torch.ones(1, 3)).sum().backward()
    opt.step()
    return ck.save_checkpoint(
        path, stage="meta", config={"name": "t"}, model_config={"backbone": "resnet_toy"},
        state_dict=model.state_dict(), epoch=2, iteration=7, optimizer=opt.state_dict(),
        scheduler={"base_lr": 0.1}, metrics={"best_score": 0.5})


def test_round_trip_has_the_contract_keys(tmp_path: Path) -> None:
    path = _save(tmp_path / "last.pth", 1.0)
    ckpt = ck.load_checkpoint(path)
    for key in ("config", "state_dict", "epoch", "iteration", "optimizer", "scheduler", "rng",
                "library_version", "metrics", "model_config"):
        assert key in ckpt
    assert ckpt["epoch"] == 2 and ckpt["iteration"] == 7
    assert "momentum_buffer" in ckpt["optimizer"]["state"][0]
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left behind


def test_rng_state_restores_every_stream() -> None:
    state = ck.capture_rng_state()
    expected = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    ck.restore_rng_state(state)
    got = (random.random(), np.random.rand(), torch.rand(3))  # noqa: NPY002
    assert got[0] == expected[0] and got[1] == expected[1]
    assert torch.equal(got[2], expected[2])


def test_crash_inside_torch_save_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "last.pth", 1.0)
    real_save = torch.save

    def dying_save(obj, f, *args, **kwargs):
        real_save({"half": torch.zeros(1000)}, f)  # some bytes reach the disk, then "kill"
        raise KeyboardInterrupt("killed during save")

    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(KeyboardInterrupt):
        _save(path, 2.0)
    monkeypatch.undo()
    ckpt = ck.load_checkpoint(path)
    assert torch.all(ckpt["state_dict"]["weight"] != 2.0)  # the old weights, intact
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_failed_rename_keeps_previous_checkpoint(tmp_path: Path, monkeypatch) -> None:
    path = _save(tmp_path / "last.pth", 1.0)
    before = path.read_bytes()

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        _save(path, 2.0)
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pth"]


def test_truncated_or_foreign_files_give_clear_errors(tmp_path: Path) -> None:
    path = _save(tmp_path / "last.pth", 1.0)
    broken = tmp_path / "broken.pth"
    broken.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="broken.pth"):
        ck.load_checkpoint(broken)
    foreign = tmp_path / "foreign.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(ValueError, match="not a msanet_lib checkpoint"):
        ck.load_checkpoint(foreign)
    with pytest.raises(FileNotFoundError, match="missing.pth"):
        ck.load_checkpoint(tmp_path / "missing.pth")


def test_export_is_float32_and_loadable(tmp_path: Path) -> None:
    # a DDP model's state dict: the wrapper prefixes every key
    state = {"module.w": torch.ones(2, 2, dtype=torch.float64), "module.n": torch.tensor(3)}
    path = ck.export_model(tmp_path / "export.pth", stage="meta",
                           model_config={"backbone": "resnet_toy"}, state_dict=state)
    ckpt = ck.load_checkpoint(path)
    assert ckpt["format"] == ck.EXPORT_FORMAT
    assert set(ckpt["state_dict"]) == {"w", "n"}  # DDP prefix stripped
    assert ckpt["state_dict"]["w"].dtype == torch.float32
    assert ckpt["state_dict"]["n"].dtype == torch.int64


def _two_layers() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))


def test_checkpoints_of_wrapped_models_load_into_the_plain_model(tmp_path: Path) -> None:
    """Saved from DataParallel/DDP (``module.``) around torch.compile (``_orig_mod.``), a
    checkpoint and an export hold the plain model's keys and load strictly into it."""
    model = _two_layers()
    wrapped = torch.nn.DataParallel(torch.compile(model))  # compiles lazily: nothing runs here
    assert all(k.startswith("module._orig_mod.") for k in wrapped.state_dict())
    last = ck.save_checkpoint(
        tmp_path / "last.pth", stage="meta", config={}, model_config={},
        state_dict=wrapped.state_dict(), epoch=1, iteration=1, optimizer=None, scheduler=None,
        metrics={})
    export = ck.export_model(tmp_path / "export.pth", stage="meta", model_config={},
                             state_dict=wrapped.state_dict())
    for path in (last, export):
        fresh = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.BatchNorm1d(4))
        fresh.load_state_dict(ck.load_checkpoint(path)["state_dict"])  # strict
        for key, value in model.state_dict().items():
            assert torch.equal(fresh.state_dict()[key], value), key


def test_a_submodule_named_module_keeps_its_name(tmp_path: Path) -> None:
    """Only a prefix that every key carries comes from a wrapper; a child called ``module``
    next to other children is part of the model and its keys are saved as they are."""
    model = torch.nn.Module()
    model.module = torch.nn.Linear(2, 2)
    model.head = torch.nn.Linear(2, 1)
    path = ck.export_model(tmp_path / "export.pth", stage="meta", model_config={},
                           state_dict=model.state_dict())
    assert set(ck.load_checkpoint(path)["state_dict"]) == set(model.state_dict())
