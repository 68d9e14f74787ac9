"""The ``data:`` section (regime, the authors' list files, base annotations) and per-fold
epochs, through ``msanet-train`` and the training datasets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from msanet_lib.data.io import read_label
from msanet_lib.data.lists import EpisodeLists, episode_lists, write_authors_lists
from msanet_lib.data.splits import fold_split
from msanet_lib.training import __main__ as train_cli
from msanet_lib.training.data import base_class_dataset, episode_dataset

from .conftest import TINY


def _tiny_yaml(tmp_path: Path, toy_root: Path) -> Path:
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump({"extends": "toy", "data_root": str(toy_root),
                                    "out": str(tmp_path / "run"), **TINY}))
    return path


def _no_traceback(err: str) -> None:
    assert "Traceback" not in err and err.startswith("msanet-train: error: "), err
    assert len(err.strip().splitlines()) <= 2, err


@pytest.mark.slow
def test_regime_flag_and_per_fold_epochs_reach_the_run(toy_root: Path, tmp_path: Path,
                                                       capsys) -> None:
    bam = episode_lists(toy_root, "toy", 1, "train", regime="bam")
    pfenet = episode_lists(toy_root, "toy", 1, "train", regime="pfenet")
    assert len(pfenet.images) > len(bam.images)  # the toy world shows novel classes too
    code = train_cli.main(["--config", str(_tiny_yaml(tmp_path, toy_root)), "--stage", "meta",
                           "--fold", "1", "--regime", "pfenet",
                           "--set", "meta.base_learner=none",
                           "--set", "meta.epochs={0: 1, 1: 2, 2: 1, 3: 1}"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    header = next(line for line in captured.out.splitlines() if line.startswith("[meta]"))
    assert "x 2 epochs (meta.epochs = 2 for fold 1 of {0: 1, 1: 2, 2: 1, 3: 1})" in header
    assert f"train_episodes: {len(pfenet.images)}" in header
    assert "lists: pfenet regime (built from the dataset)" in header
    done = json.loads((tmp_path / "run" / "meta_1shot" / "done.json").read_text())
    assert done["epochs_run"] == 2
    assert done["config"]["meta"]["epochs"] == 2 and done["config"]["data"]["regime"] == "pfenet"
    assert done["config"]["per_fold"] == {"meta.epochs": {"0": 1, "1": 2, "2": 1, "3": 1}}
    saved = yaml.safe_load((tmp_path / "run" / "config.yaml").read_text())
    assert saved["meta"]["epochs"] == 2 and saved["data"]["regime"] == "pfenet"
    # resuming with the same command finds the same recipe (the record is not compared)
    assert train_cli.main(["--config", str(_tiny_yaml(tmp_path, toy_root)), "--stage", "meta",
                           "--fold", "1", "--regime", "pfenet", "--resume",
                           "--set", "meta.base_learner=none",
                           "--set", "meta.epochs={0: 1, 1: 2, 2: 1, 3: 1}"]) == 0
    assert "already complete" in capsys.readouterr().out


def test_data_errors_stop_before_anything_is_trained(toy_root: Path, tmp_path: Path,
                                                     capsys) -> None:
    config = str(_tiny_yaml(tmp_path, toy_root))
    lists = tmp_path / "fss_list"
    (lists / "train").mkdir(parents=True)  # val/ missing
    for argv, words in (
        (["--set", "data.regime=hsnet"], "'data.regime' expects one of 'bam' | 'pfenet'"),
        (["--set", "regime=pfenet"], "did you mean 'data.regime'"),
        (["--lists", str(lists)], "data_list_0.txt not found"),
        (["--base-annotations", str(tmp_path)], f"no folder {tmp_path / 'train' / '0'}"),
    ):
        assert train_cli.main(["--config", config, *argv]) == 2, argv
        err = capsys.readouterr().err
        _no_traceback(err)
        assert words in err, err
    assert not (tmp_path / "run").exists()
    with pytest.raises(SystemExit):  # argparse's own check of the choices
        train_cli.main(["--config", config, "--regime", "hsnet"])


def test_authors_list_files_and_base_annotations_are_read(toy_root: Path, tmp_path: Path,
                                                          tiny_config) -> None:
    # the authors' layout: <lists>/{train,val}/data_list_<f>.txt + sub_class_file_list_<f>.txt;
    # a shortened train list shows that the files, not built lists, are read
    full = episode_lists(toy_root, "toy", 2, "train", regime="bam")
    short = EpisodeLists(full.images[:20], full.class_files)
    write_authors_lists(short, tmp_path / "fss_list" / "train", 2)
    write_authors_lists(episode_lists(toy_root, "toy", 2, "val"), tmp_path / "fss_list" / "val", 2)
    # pre-generated base labels: every base pixel as base class 1, so they differ from the
    # remapped ones wherever another base class shows
    base_dir = tmp_path / "base_annotation"
    lookup = fold_split("toy", 2).base_lookup()
    from PIL import Image

    for split in ("train", "val"):
        for _, label_rel in episode_lists(toy_root, "toy", 2, split, regime="bam").images + \
                [p for ps in short.class_files.values() for p in ps]:
            remapped = lookup[read_label(toy_root / label_rel, 21)]
            out = base_dir / split / "2" / Path(label_rel).name
            out.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(np.where((remapped > 0) & (remapped < 255), 1, remapped)
                            .astype(np.uint8)).save(out)
    cfg = tiny_config(fold=2, data={"lists": str(tmp_path / "fss_list"),
                                    "base_annotations": str(base_dir)})
    train = episode_dataset(cfg, "train", 48)
    assert len(train) == 20 and train.lists.source.endswith("data_list_2.txt")
    assert len(episode_dataset(cfg, "val", 48)) == len(episode_lists(toy_root, "toy", 2, "val")
                                                       .images)
    plain = episode_dataset(tiny_config(fold=2), "train", 48)
    assert len(plain) == len(full.images)
    # same query images in the same order and the same per-episode generators: the base labels
    # differ exactly where the files say "class 1" for another base class
    several_classes = 0
    for i in range(8):
        ours, remapped = train[i]["query_base_label"], plain[i]["query_base_label"]
        assert set(ours.unique().tolist()) <= {0, 1, 255}
        assert ((ours > 0) == (remapped > 0)).all()
        several_classes += int(((remapped > 1) & (remapped < 255)).any())
    assert several_classes > 0
    # stage 1 reads the same base labels (every image of the split, as BAM's train_base.py)
    base_val = base_class_dataset(cfg, "val", 48)
    assert base_val.base_data_root == base_dir
