"""The msanet-data command on small data."""

from __future__ import annotations

from PIL import Image

from msanet_lib.data import toy
from msanet_lib.data.__main__ import main

from .conftest import rects_for


def test_show_writes_a_picture(tmp_path):
    root = toy.ensure_toy_benchmark(tmp_path / "toy", seed=0, sizes={"train": 32, "val": 32})
    out = tmp_path / "episodes.png"
    assert main(["show", "--root", str(root), "--fold", "0", "--shots", "1", "--count", "2",
                 "--out", str(out)]) == 0
    with Image.open(out) as img:
        assert img.size[0] > 100 and img.size[1] > 100


def test_build_lists_and_errors(tmp_path, fake_voc, capsys):
    train = {f"t{i}": rects_for([6 + i % 3]) for i in range(6)}
    val = {f"v{i}": rects_for([1 + i % 2]) for i in range(4)}
    root = fake_voc(train, val)
    assert main(["build-lists", "--benchmark", "pascal", "--root", str(root),
                 "--min-pixels", "100"]) == 0
    out = capsys.readouterr().out
    assert "train fold 0 bam" in out and "train fold 3 pfenet" in out and "val fold 2" in out
    assert main(["show", "--benchmark", "pascal", "--root", str(tmp_path / "none")]) == 2
    err = capsys.readouterr().err
    assert "msanet-data download pascal" in err and str(tmp_path / "none") in err
