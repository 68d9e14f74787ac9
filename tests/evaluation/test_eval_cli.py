"""``msanet-eval`` end to end with a tiny MSANet and fake episodes (no dataset on disk)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from msanet_lib.evaluation import __main__ as cli
from msanet_lib.model.msanet import MSANet, MSANetConfig

SIZE = 33


class TinyEpisodes(torch.utils.data.Dataset):
    classes = (6, 7)
    fold, shots, benchmark, image_size = 1, 1, "toy", SIZE

    def __len__(self) -> int:
        return 3

    def __getitem__(self, index: int) -> dict:
        g = torch.Generator().manual_seed(index)
        mask = torch.zeros(SIZE, SIZE, dtype=torch.long)
        mask[8:20, 10:25] = 1
        return {
            "query_img": torch.randn(3, SIZE, SIZE, generator=g),
            "support_imgs": torch.randn(1, 3, SIZE, SIZE, generator=g),
            "support_masks": mask[None].clone(),
            "query_base_label": torch.zeros(SIZE, SIZE, dtype=torch.long),
            "class_index": index % 2,
            "query_raw_label": mask[: 20 + index, :27],
        }


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    torch.manual_seed(0)
    config = MSANetConfig(backbone="resnet_toy")
    model = MSANet(config)
    path = tmp_path / "fold1" / "best.pth"
    path.parent.mkdir()
    torch.save({"config": vars(config), "state_dict": model.state_dict()}, path)
    return path


@pytest.mark.slow
def test_eval_cli_prints_tables_and_writes_json(checkpoint, tmp_path, monkeypatch, capsys) -> None:
    calls = []

    def fake_dataset(benchmark, root, fold, shots, test_size, **options):
        calls.append((benchmark, fold, shots))
        return TinyEpisodes()

    monkeypatch.setattr(cli, "build_dataset", fake_dataset)
    out = tmp_path / "res.json"
    template = str(checkpoint).replace("fold1", "fold{fold}")
    code = cli.main(["--checkpoint", template, "--folds", "1", "--episodes", "4",
                     "--seeds", "3", "8", "--device", "cpu", "--batch-size", "2",
                     "--json", str(out)])
    assert code == 0
    assert calls == [("toy", 1, 1)]
    printed = capsys.readouterr().out
    assert "| 3 |" in printed and "| 8 |" in printed and "| **Mean** |" in printed
    assert "| fold |" in printed
    data = json.loads(out.read_text())
    seeds = data["folds"]["1"]["seeds"]
    assert [s["seed"] for s in seeds] == [3, 8]
    assert all(s["episodes"] == 4 and 0 <= s["miou"] <= 1 for s in seeds)
    assert data["folds"]["1"]["summary"]["best_miou"] == max(s["miou"] for s in seeds)


def test_missing_checkpoint_is_a_clear_error(tmp_path, capsys) -> None:
    code = cli.main(["--checkpoint", str(tmp_path / "nope.pth"), "--device", "cpu"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nope.pth does not exist" in err and "msanet-train" in err


def test_corrupt_and_foreign_checkpoints(tmp_path, capsys) -> None:
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a torch file")
    assert cli.main(["--checkpoint", str(bad), "--device", "cpu"]) == 2
    assert "is not a PyTorch checkpoint or is truncated" in capsys.readouterr().err
    base = tmp_path / "base.pth"
    torch.save({"format": "msanet-export", "stage": "base", "model_config": {},
                "state_dict": {}}, base)
    assert cli.main(["--checkpoint", str(base), "--device", "cpu"]) == 2
    assert "stage-1 base learner" in capsys.readouterr().err


def test_several_folds_need_a_fold_placeholder(checkpoint, capsys) -> None:
    code = cli.main(["--checkpoint", str(checkpoint), "--folds", "0", "1", "--device", "cpu"])
    assert code == 2
    assert "{fold}" in capsys.readouterr().err


def test_a_one_shot_model_averages_k_shots_uniformly(checkpoint) -> None:
    args = cli.parse_args(["--checkpoint", str(checkpoint), "--shots", "5"])
    model, _ = cli.build_model(args, checkpoint)
    assert model.config.shots == 5 and model.config.kshot_trans_dim == 0
    # kshot_rw keeps its 1/K initialisation: every sorted difficulty maps to the same weight.
    est = torch.rand(3, 5, 1, 1)
    weights = torch.softmax(model.kshot_rw(est), dim=1)
    assert torch.allclose(weights, torch.full_like(weights, 0.2))


def test_a_k_shot_model_keeps_its_k(tmp_path: Path, capsys) -> None:
    config = MSANetConfig(backbone="resnet_toy", shots=2)
    path = tmp_path / "fold1" / "best.pth"
    path.parent.mkdir()
    torch.save({"config": vars(config), "state_dict": MSANet(config).state_dict()}, path)
    code = cli.main(["--checkpoint", str(path), "--shots", "5", "--device", "cpu"])
    assert code == 2
    assert "trained with 2 shots" in capsys.readouterr().err


@pytest.mark.slow
def test_eval_cli_reads_an_authors_checkpoint(tmp_path, monkeypatch, capsys) -> None:
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet_toy"))
    # The authors' layout: {'state_dict': ..., 'epoch': ...} with DDP's 'module.' prefix.
    path = tmp_path / "train_epoch_3_0.5.pth"
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()},
                "epoch": 3}, path)
    monkeypatch.setattr(cli, "build_dataset", lambda *a, **k: TinyEpisodes())
    args = ["--checkpoint", str(path), "--authors", "--backbone", "resnet_toy", "--shots", "1",
            "--episodes", "2", "--seeds", "1", "--device", "cpu"]
    # Without --benchmark the authors' file would silently be scored on the toy benchmark.
    assert cli.main(args) == 2
    assert "does not say the benchmark; pass --benchmark pascal or coco" in capsys.readouterr().err
    assert cli.main([*args, "--benchmark", "toy"]) == 2
    assert "does not say the fold; pass --folds N" in capsys.readouterr().err
    code = cli.main([*args, "--benchmark", "toy", "--folds", "1"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "| 1 |" in captured.out
    assert "epoch 3, prefixes stripped: 'module.'" in captured.err
    assert "benchmark toy (flag), backbone resnet_toy (flag), shots 1 (flag)" in captured.err
    # The same file without --authors: the message says to add it.
    assert cli.main(["--checkpoint", str(path), "--device", "cpu"]) == 2
    assert "add --authors" in capsys.readouterr().err


@pytest.mark.parametrize(("path", "hints"), [
    ("exp/pascal/MSANet/split2/resnet101/snapshot/resnet101_5_2_0.7415.pth",
     {"benchmark": "pascal", "fold": 2, "backbone": "resnet101", "shots": 5}),
    ("weights/coco/vgg_1_3_0.41.pth", {"benchmark": "coco", "fold": 3, "backbone": "vgg16_bn",
                                       "shots": 1}),
    ("pascal_split0_resnet50_0.6925.pt", {"benchmark": "pascal", "fold": 0,
                                          "backbone": "resnet50"}),
    ("downloads/best.pth", {}),
])
def test_authors_file_names_give_benchmark_fold_backbone_and_shots(path: str, hints: dict) -> None:
    assert cli.authors_file_hints(Path(path)) == hints


@pytest.mark.slow
def test_eval_cli_reads_a_training_export(tmp_path, monkeypatch, capsys) -> None:
    from msanet_lib.training.checkpoint import export_model

    config = MSANetConfig(backbone="resnet_toy")
    path = export_model(tmp_path / "model.pth", stage="meta", model_config=vars(config),
                        state_dict=MSANet(config).state_dict(),
                        config={"benchmark": "toy", "fold": 2, "data_root": None,
                                "meta": {"image_size": 97}})
    calls = []
    monkeypatch.setattr(cli, "build_dataset",
                        lambda *a, **k: calls.append(a) or TinyEpisodes())
    code = cli.main(["--checkpoint", str(path), "--episodes", "2", "--seeds", "1",
                     "--device", "cpu", "--test-size", "97"])
    err = capsys.readouterr().err
    assert code == 0, err
    assert calls == [("toy", None, 2, 1, 97)]  # benchmark and fold come from the checkpoint
    assert f"test size {SIZE} px, trained at 97 px" in err
    assert cli.main(["--checkpoint", str(path), "--test-size", "0"]) == 2
    assert "--test-size 0" in capsys.readouterr().err


def test_evaluation_copy_flags() -> None:
    default = cli.parse_args(["--checkpoint", "x.pth"])
    assert default.fold_bn and default.channels_last is None  # None: decided by the device
    off = cli.parse_args(["--checkpoint", "x.pth", "--no-fold-bn", "--no-channels-last"])
    assert not off.fold_bn and off.channels_last is False
    assert cli.parse_args(["--checkpoint", "x.pth", "--channels-last"]).channels_last is True


def test_protocol_option_through_the_command(checkpoint, tmp_path, monkeypatch, capsys) -> None:
    calls = []

    def fake_dataset(benchmark, root, fold, shots, test_size, **options):
        calls.append((test_size, options))
        return TinyEpisodes()

    monkeypatch.setattr(cli, "build_dataset", fake_dataset)
    out = tmp_path / "res.json"
    base = ["--checkpoint", str(checkpoint), "--episodes", "2", "--device", "cpu",
            "--json", str(out)]
    assert cli.main([*base, "--protocol", "hsnet"]) == 0
    err = capsys.readouterr().err
    assert calls[-1] == (None, {"protocol": "hsnet", "lists": None, "base_annotations": None})
    assert "HSNet protocol: stretched to a square" in err and "pair list is not" in err
    fold = json.loads(out.read_text())["folds"]["0"]
    assert [s["seed"] for s in fold["seeds"]] == [0]  # HSNet's utils.fix_randseed(0)
    assert fold["info"]["protocol"] == "hsnet"
    # an explicit --seeds wins and the header says it departs from HSNet's single seed
    assert cli.main([*base, "--protocol", "hsnet", "--seeds", "3", "4"]) == 0
    assert "--seeds instead of its seed 0" in capsys.readouterr().err
    assert [s["seed"] for s in json.loads(out.read_text())["folds"]["0"]["seeds"]] == [3, 4]
    # the authors' protocol stays the default, with their five seeds
    assert cli.parse_args(["--checkpoint", "x.pth"]).protocol == "authors"
    assert cli.PROTOCOLS["authors"]["seeds"] == [510, 365, 382, 322, 988]
    assert cli.main([*base, "--seeds", "1"]) == 0
    assert calls[-1][1]["protocol"] == "authors"
    assert "authors' protocol" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli.parse_args(["--checkpoint", "x.pth", "--protocol", "pfenet"])


def test_lists_and_base_annotations_default_to_the_checkpoints(tmp_path, monkeypatch,
                                                               capsys) -> None:
    from msanet_lib.training.checkpoint import export_model

    config = MSANetConfig(backbone="resnet_toy")
    data = {"regime": "pfenet", "lists": "lists/fss", "base_annotations": "base/pascal"}
    path = export_model(tmp_path / "model.pth", stage="meta", model_config=vars(config),
                        state_dict=MSANet(config).state_dict(),
                        config={"benchmark": "toy", "fold": 1, "data": data})
    calls = []
    monkeypatch.setattr(cli, "build_dataset",
                        lambda *a, **k: calls.append(k) or TinyEpisodes())
    base = ["--checkpoint", str(path), "--episodes", "2", "--seeds", "1", "--device", "cpu"]
    assert cli.main(base) == 0
    assert calls[-1] == {"protocol": "authors", "lists": "lists/fss",
                         "base_annotations": "base/pascal"}
    assert "training regime: pfenet" in capsys.readouterr().err
    assert cli.main([*base, "--lists", "mine", "--base-annotations", "b"]) == 0
    assert calls[-1] == {"protocol": "authors", "lists": "mine", "base_annotations": "b"}


def test_a_missing_list_folder_is_one_line(checkpoint, tmp_path, capsys) -> None:
    code = cli.main(["--checkpoint", str(checkpoint), "--device", "cpu",
                     "--lists", str(tmp_path / "fss_list")])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("msanet-eval: error: --lists ") and "val/data_list_0.txt" in err
    assert "leave it out" in err


@pytest.mark.slow
def test_hsnet_protocol_on_a_real_benchmark(checkpoint, tmp_path, capsys) -> None:
    """No fake: the toy benchmark's val episodes at 400 x 400, scored at 400 x 400."""
    from msanet_lib.data.toy import ensure_toy_benchmark

    root = ensure_toy_benchmark(tmp_path / "toy", sizes={"train": 16, "val": 32})
    dataset = cli.build_dataset("toy", str(root), 1, 1, None, protocol="hsnet")
    item = dataset[0]
    assert item["query_img"].shape == (3, 400, 400)
    assert item["query_raw_label"].shape == (400, 400)
    assert torch.equal(item["query_raw_label"], item["query_mask"])
    out = tmp_path / "res.json"
    code = cli.main(["--checkpoint", str(checkpoint), "--data-root", str(root), "--folds", "1",
                     "--protocol", "hsnet", "--episodes", "2", "--device", "cpu",
                     "--json", str(out)])
    err = capsys.readouterr().err
    assert code == 0, err
    assert "test size 400 px" in err
    info = json.loads(out.read_text())["folds"]["1"]["info"]
    assert (info["protocol"], info["test_size"]) == ("hsnet", 400)


@pytest.mark.parametrize("has_units", [True, False])
def test_bf16_on_a_cpu_without_bf16_units_warns_once(checkpoint, monkeypatch, capsys,
                                                      has_units: bool) -> None:
    """Emulated bfloat16 is several times slower than float32 (measured 13x on an AVX2 CPU)."""
    import msanet_lib.runtime as runtime

    monkeypatch.setattr(runtime.torch.cpu, "_is_avx512_bf16_supported", lambda: has_units)
    monkeypatch.setattr(runtime.torch.cpu, "_is_amx_tile_supported", lambda: False)
    monkeypatch.setattr(cli, "build_dataset", lambda *a, **k: TinyEpisodes())
    code = cli.main(["--checkpoint", str(checkpoint), "--episodes", "2", "--seeds", "3",
                     "--device", "cpu", "--amp", "bf16"])
    assert code == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if "warning:" in line]
    assert len(warnings) == (0 if has_units else 1)
    if not has_units:
        assert "no bfloat16 units" in warnings[0] and "drop --amp bf16" in warnings[0]
    assert runtime.slow_amp_note(torch.device("cpu"), None) is None
    assert runtime.slow_amp_note(torch.device("cuda"), "bf16") is None
