"""The commands' error policy: a user's mistake prints one short message, exit 2, no traceback,
and nothing half-written is left behind (``msanet_lib.runtime.run_command``)."""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
import torch
import yaml

from msanet_lib import demo, runtime
from msanet_lib.data import __main__ as data_cli
from msanet_lib.evaluation import __main__ as eval_cli
from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.training import __main__ as train_cli

from .conftest import TINY


def _no_traceback(err: str, prog: str) -> None:
    assert "Traceback" not in err and err.startswith(f"{prog}: error: "), err
    assert len(err.strip().splitlines()) <= 2, err


def test_atomic_write_leaves_the_old_file_or_none_on_a_full_disk(tmp_path: Path,
                                                                  monkeypatch) -> None:
    target = tmp_path / "results.json"
    target.write_text("old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device", str(target))

    monkeypatch.setattr(runtime.os, "fsync", full)
    with pytest.raises(OSError):
        runtime.atomic_write_text(target, "new")
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # the temporary file is gone too
    assert "no space left on the device while writing" in runtime.describe_os_error(
        OSError(errno.ENOSPC, "No space left on device", str(target)))


def test_stale_temporary_files_are_removed(tmp_path: Path) -> None:
    stale = tmp_path / ".last.pth.abc123.tmp"
    stale.write_bytes(b"half")
    keep = tmp_path / "last.pth"
    keep.write_bytes(b"whole")
    assert runtime.remove_stale_temps(tmp_path, "last.pth") == [stale]
    assert sorted(tmp_path.iterdir()) == [keep]


@pytest.mark.slow
def test_eval_json_on_a_full_disk(tmp_path: Path, monkeypatch, capsys) -> None:
    config = MSANetConfig(backbone="resnet_toy")
    path = tmp_path / "model.pth"
    torch.save({"config": vars(config), "state_dict": MSANet(config).state_dict()}, path)
    from ..evaluation.test_eval_cli import TinyEpisodes

    monkeypatch.setattr(eval_cli, "build_dataset", lambda *a, **k: TinyEpisodes())
    out = tmp_path / "res.json"
    real_fsync = os.fsync

    def full(fd: int) -> None:
        if os.path.realpath(f"/proc/self/fd/{fd}").endswith(".tmp"):
            raise OSError(errno.ENOSPC, "No space left on device", str(out))
        real_fsync(fd)

    monkeypatch.setattr(runtime.os, "fsync", full)
    code = eval_cli.main(["--checkpoint", str(path), "--episodes", "2", "--seeds", "1",
                          "--device", "cpu", "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 2
    assert "no space left on the device while writing" in err and "res.json" in err
    assert not out.exists() and not list(tmp_path.glob(".res.json.*"))


def test_train_with_a_truncated_base_learner_names_the_file(toy_root: Path, tmp_path: Path,
                                                             capsys) -> None:
    broken = tmp_path / "best.pth"
    config = MSANetConfig(backbone="resnet_toy")
    torch.save({"state_dict": MSANet(config).state_dict()}, broken)
    broken.write_bytes(broken.read_bytes()[:1000])  # a download cut short
    cfg = tmp_path / "tiny.yaml"
    cfg.write_text(yaml.safe_dump({"extends": "toy", "data_root": str(toy_root),
                                   "out": str(tmp_path / "run"), **TINY}))
    code = train_cli.main(["--config", str(cfg), "--stage", "meta", "--set",
                           f"meta.base_learner={broken}"])
    err = capsys.readouterr().err
    assert code == 2
    _no_traceback(err, "msanet-train")
    assert str(broken) in err and "truncated" in err
    not_weights = tmp_path / "notes.txt"
    not_weights.write_text("e" * 200)
    assert train_cli.main(["--config", str(cfg), "--stage", "meta", "--set",
                           f"meta.base_learner={not_weights}"]) == 2
    err = capsys.readouterr().err
    _no_traceback(err, "msanet-train")
    assert str(not_weights) in err


def test_demo_checks_its_arguments_before_training(tmp_path: Path, capsys) -> None:
    code = demo.main(["--shots", "0", "--runs", str(tmp_path / "runs"),
                      "--outputs", str(tmp_path / "out")])
    assert code == 2
    _no_traceback(capsys.readouterr().err, "msanet-demo")
    assert not (tmp_path / "runs").exists()  # nothing was trained


def test_data_command_reports_an_unreadable_root(tmp_path: Path, capsys) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    code = data_cli.main(["generate", "toy", "--root", str(blocker / "toy")])
    err = capsys.readouterr().err
    assert code == 2
    _no_traceback(err, "msanet-data")
    assert str(blocker) in err


def test_debug_shows_the_traceback(tmp_path: Path, capsys) -> None:
    assert eval_cli.main(["--checkpoint", str(tmp_path / "none.pth"), "--debug"]) == 2
    assert "Traceback" in capsys.readouterr().err
