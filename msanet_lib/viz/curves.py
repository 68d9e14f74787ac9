"""Training curves: loss, learning rate and validation mIoU of a run, in one figure."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
from matplotlib.figure import Figure


def _series(records: Sequence[Mapping[str, Any]], x: str, y: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for rec in records:
        value = rec.get(y)
        if value is None or value == "" or rec.get(x) in (None, ""):
            continue
        xs.append(float(rec[x]))
        ys.append(float(value))
    return xs, ys


def plot_training_curves(
    epochs: Sequence[Mapping[str, Any]],
    iterations: Sequence[Mapping[str, Any]] = (),
    path: str | Path | None = None,
    title: str | None = None,
) -> Figure:
    """Draw loss, learning rate and validation mIoU against training progress.

    Args:
        epochs: one record per epoch with ``epoch`` and any of ``loss``, ``val_miou``,
            ``val_fbiou``, ``lr`` (the ``log.jsonl`` of a run).
        iterations: optional records with ``iteration``, ``loss``, ``lr`` (``iterations.csv``),
            drawn as the fine-grained loss and lr curves.
        path: save the figure there as PNG (folders are created).
        title: figure title (e.g. the run name).
    Returns:
        The matplotlib figure (closed if it was saved).
    """
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax_loss, ax_lr, ax_val = axes
    iters_per_epoch = None
    if iterations and epochs:
        last = epochs[-1]
        if last.get("iteration") and last.get("epoch"):
            iters_per_epoch = float(last["iteration"]) / float(last["epoch"])

    xs, ys = _series(iterations, "iteration", "loss")
    if xs:
        ax_loss.plot(xs, ys, lw=0.8, alpha=0.6, label="train loss (logged steps)")
    ex, ey = _series(epochs, "iteration" if iters_per_epoch else "epoch", "loss")
    if ex:
        ax_loss.plot(ex, ey, "o-", ms=3, label="train loss (epoch mean)")
    ax_loss.set_xlabel("iteration" if iters_per_epoch or xs else "epoch")
    ax_loss.set_ylabel("loss")
    ax_loss.set_title("training loss")
    if xs or ex:
        ax_loss.legend(fontsize=8)

    lx, ly = _series(iterations, "iteration", "lr")
    if not lx:
        lx, ly = _series(epochs, "epoch", "lr")
        ax_lr.set_xlabel("epoch")
    else:
        ax_lr.set_xlabel("iteration")
    ax_lr.plot(lx, ly)
    ax_lr.set_title("learning rate (largest group)")

    vx, vy = _series(epochs, "epoch", "val_miou")
    if vx:
        ax_val.plot(vx, [100 * v for v in vy], "o-", ms=3, label="val mIoU")
        best = max(range(len(vy)), key=vy.__getitem__)
        ax_val.plot([vx[best]], [100 * vy[best]], "r*", ms=10, label=f"best {100 * vy[best]:.1f}")
    fx, fy = _series(epochs, "epoch", "val_fbiou")
    if fx:
        ax_val.plot(fx, [100 * v for v in fy], "s--", ms=3, label="val FB-IoU")
    ax_val.set_xlabel("epoch")
    ax_val.set_ylabel("%")
    ax_val.set_title("validation")
    if vx or fx:
        ax_val.legend(fontsize=8)

    for ax in axes:
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)
        plt.close(fig)
    return fig
