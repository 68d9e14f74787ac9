"""scripts/benchmark.py runs end to end on its own model (the mode that needs no authors' code).

Times are never asserted: only that every row is measured and printed.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "benchmark.py"


def _load():
    spec = importlib.util.spec_from_file_location("benchmark_script", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def global_torch_settings():
    """The script sets TF32 flags (and threads, with --threads): give them back afterwards."""
    saved = (torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32,
             torch.get_num_threads())
    yield
    torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = saved[:2]
    torch.set_num_threads(saved[2])


def test_own_model_rows_are_measured_and_printed(capsys: pytest.CaptureFixture[str],
                                                 global_torch_settings: None) -> None:
    bench = _load()
    bench.main(["--device", "cpu", "--size", "65", "--repeats", "1", "--eval-batches", "1",
                "--train-batches", "1"])
    out = capsys.readouterr().out
    rows = [line for line in out.splitlines() if line.startswith("| eval") or
            line.startswith("| train")]
    assert [r.split("|")[1].strip() for r in rows] == [
        "eval forward, 1-shot, batch 1", "eval forward, 5-shot, batch 1",
        "train step, 1-shot, batch 1"]
    for row in rows:
        seconds = float(row.split("|")[2])
        assert seconds > 0


def test_bad_arguments_say_what_to_do(global_torch_settings: None) -> None:
    bench = _load()
    with pytest.raises(SystemExit) as err:
        bench.main(["--size", "8"])
    assert err.value.code == 2
    with pytest.raises(SystemExit, match="no model/MSANet.py there"):
        bench.authors_model(Path("/nonexistent"), 1)
