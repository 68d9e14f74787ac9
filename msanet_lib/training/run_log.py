"""What a run writes while it trains: CSV/JSON metric logs, a PNG of the curves, TensorBoard.

Files in a stage's folder (``<out>/base`` or ``<out>/meta``):

- ``log.csv`` and ``log.jsonl``: one record per epoch (loss, lr, validation mIoU, best so far);
- ``iterations.csv``: loss (under torchrun the mean over all ranks, as in ``log.csv``) and lr
  every ``runtime.log_every`` iterations;
- ``curves.png``: both drawn by :func:`msanet_lib.viz.curves.plot_training_curves`;
- ``tb/``: TensorBoard events, when ``torch.utils.tensorboard`` can be imported.

On resume the logs are rewritten from the checkpoint's history, so records of work that was lost
with the interruption never appear twice.
"""

from __future__ import annotations

import csv
import json
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from msanet_lib.viz.curves import plot_training_curves

ITER_FIELDS = ("iteration", "epoch", "loss", "lr")


class RunLog:
    """Epoch and iteration metric logs of one stage; only the main process should create one."""

    def __init__(self, folder: str | Path, title: str, tensorboard: bool = True) -> None:
        self.folder = Path(folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self.title = title
        self.epochs: list[dict[str, Any]] = []
        self.iterations: list[dict[str, Any]] = []
        self.writer = _tensorboard_writer(self.folder / "tb") if tensorboard else None

    # --- restore -------------------------------------------------------------------------
    def restore(self, epochs: Sequence[Mapping[str, Any]], iteration: int) -> None:
        """Start from a checkpoint's epoch history; drop logged iterations after ``iteration``."""
        self.epochs = [dict(r) for r in epochs]
        path = self.folder / "iterations.csv"
        if path.is_file():
            with path.open(newline="") as handle:
                rows = [r for r in csv.DictReader(handle) if int(r["iteration"]) <= iteration]
            self.iterations = [{k: _number(v) for k, v in r.items()} for r in rows]
        self._rewrite()

    # --- append --------------------------------------------------------------------------
    def log_iteration(self, record: Mapping[str, Any]) -> None:
        rec = {k: record.get(k) for k in ITER_FIELDS}
        self.iterations.append(rec)
        path = self.folder / "iterations.csv"
        new = not path.is_file()
        with path.open("a", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=ITER_FIELDS)
            if new:
                writer.writeheader()
            writer.writerow(rec)
        if self.writer is not None:
            for key in ("loss", "lr"):
                if rec.get(key) is not None:
                    self.writer.add_scalar(f"train/{key}", rec[key], rec["iteration"])

    def log_epoch(self, record: Mapping[str, Any]) -> None:
        """Append one epoch's record to log.csv/log.jsonl and redraw curves.png."""
        self.epochs.append(dict(record))
        self._rewrite()
        if self.writer is not None:
            for key, value in record.items():
                if isinstance(value, (int, float)) and key not in ("epoch", "iteration"):
                    self.writer.add_scalar(f"epoch/{key}", value, record.get("epoch", 0))
            self.writer.flush()

    def _rewrite(self) -> None:
        fields: list[str] = []
        for rec in self.epochs:
            fields += [k for k in rec if k not in fields]
        with (self.folder / "log.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=fields)
            writer.writeheader()
            writer.writerows(self.epochs)
        with (self.folder / "log.jsonl").open("w") as handle:
            for rec in self.epochs:
                handle.write(json.dumps(rec) + "\n")
        with (self.folder / "iterations.csv").open("w", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=ITER_FIELDS)
            writer.writeheader()
            writer.writerows(self.iterations)
        self.plot()

    def plot(self) -> Path:
        path = self.folder / "curves.png"
        plot_training_curves(self.epochs, self.iterations, path=path, title=self.title)
        return path

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _number(text: str) -> Any:
    if text in ("", "None"):
        return None
    try:
        return int(text)
    except ValueError:
        return float(text)


def _tensorboard_writer(folder: Path) -> Any:
    """A SummaryWriter if TensorBoard is installed (optional dependency), else None."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from torch.utils.tensorboard import SummaryWriter
    except Exception:  # ImportError, or a broken tensorboard install
        return None
    return SummaryWriter(str(folder))
