"""The README's main job (`msanet-demo`) end to end, in fast mode (the same code path, tiny counts)."""

import json
from pathlib import Path

import pytest

from msanet_lib import demo


@pytest.mark.slow
def test_demo_trains_evaluates_and_draws(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("MSANET_FAST", "1")
    outputs, runs = tmp_path / "outputs", tmp_path / "runs"
    code = demo.main(["--outputs", str(outputs), "--runs", str(runs), "--device", "cpu"])
    assert code == 0
    report = json.loads((outputs / "demo_results.json").read_text())
    assert set(report["results"]) == {"1", "5"}
    for k in ("1", "5"):
        assert report["results"][k]["shots"] == int(k)
        assert 0.0 <= report["results"][k]["summary"]["mean_miou"] <= 1.0
    for name in ("demo_curves_base.png", "demo_curves_meta.png", "demo_episodes_1shot.png",
                 "demo_episodes_5shot.png", "demo_per_class_iou.png"):
        assert (outputs / name).stat().st_size > 10_000, name
    assert (runs / "meta_1shot" / "best.pth").is_file()
