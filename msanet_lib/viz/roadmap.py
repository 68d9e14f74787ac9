"""The course's roadmap: MSANet's pipeline (the paper's Fig. 2) drawn as a diagram, with the
boxes of one notebook highlighted ("you are here").

The diagram is drawn by this code, not copied from the paper: one box per module of
:class:`~msanet_lib.model.MSANet`, in the order its ``forward`` runs them, and a strip for the
notebooks about training, evaluation and the playground.
"""

from __future__ import annotations

from dataclasses import dataclass

from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import FancyBboxPatch

from msanet_lib.viz.style import panels

HERE = "#f4a300"
OTHER = "#e8e8e8"
DONE = "#cfe3f5"


@dataclass(frozen=True)
class Box:
    """One stage of the pipeline: its label, centre (x, y) and the notebook that builds it."""

    key: str
    label: str
    x: float
    y: float
    notebook: int


BOXES = (
    Box("support", "support image\n+ mask", 0.0, 2.0, 0),
    Box("query", "query image", 0.0, 0.0, 0),
    Box("backbone", "frozen backbone\n(deep-stem ResNet)", 2.2, 1.0, 1),
    Box("prototype", "masked average\npooling: prototype", 4.5, 3.0, 2),
    Box("prior", "prior mask\n(layer4 cosine)", 4.5, 2.0, 3),
    Box("multi_similarity", "multi-similarity\n(every block)", 4.5, 1.0, 4),
    Box("attention", "attention\n(gated support)", 4.5, 0.0, 5),
    Box("kshot", "K-shot\nreweighting", 6.8, 3.0, 8),
    Box("meta", "enrichment:\nASPP + decoder", 6.8, 1.5, 6),
    Box("base", "base learner\n(PSPNet head)", 4.5, -1.0, 7),
    Box("ensemble", "ensemble\n(scene difference)", 9.1, 0.5, 7),
    Box("output", "query mask", 11.2, 0.5, 6),
    Box("training", "09 training", 2.2, -2.3, 9),
    Box("evaluation", "10 evaluation", 5.6, -2.3, 10),
    Box("playground", "11 playground", 9.0, -2.3, 11),
)
ARROWS = (
    ("support", "backbone"), ("query", "backbone"), ("backbone", "prototype"),
    ("backbone", "prior"), ("backbone", "multi_similarity"), ("backbone", "attention"),
    ("backbone", "base"), ("prototype", "meta"), ("prior", "meta"), ("multi_similarity", "meta"),
    ("attention", "meta"), ("kshot", "meta"), ("meta", "ensemble"), ("base", "ensemble"),
    ("ensemble", "output"),
)
WIDTH, HEIGHT = 1.8, 0.72


def roadmap(here: int | None = None, ax: Axes | None = None) -> Figure:
    """Draw the pipeline; the boxes built in notebook ``here`` are orange, those of earlier
    notebooks light blue, the rest grey. Returns the figure."""
    if ax is None:
        fig, axes = panels(1, 1, figsize=(11, 4.4))
        ax = axes[0, 0]
    by_key = {b.key: b for b in BOXES}
    for b in BOXES:
        if here is not None and b.notebook == here:
            face, weight = HERE, "bold"
        elif here is not None and b.notebook < here:
            face, weight = DONE, "normal"
        else:
            face, weight = OTHER, "normal"
        ax.add_patch(FancyBboxPatch((b.x - WIDTH / 2, b.y - HEIGHT / 2), WIDTH, HEIGHT,
                                    boxstyle="round,pad=0.04", facecolor=face,
                                    edgecolor="#444444", linewidth=1.2 if face == HERE else 0.6))
        ax.text(b.x, b.y, b.label, ha="center", va="center", fontsize=8, fontweight=weight)
        if b.notebook < 9 and b.key not in ("output",):
            ax.text(b.x + WIDTH / 2 - 0.05, b.y + HEIGHT / 2 - 0.05, f"{b.notebook:02d}",
                    ha="right", va="top", fontsize=6, color="#555555")
    for start, end in ARROWS:
        a, b = by_key[start], by_key[end]
        if abs(a.x - b.x) < WIDTH:  # same column: top to bottom
            tip, tail = (b.x, b.y + HEIGHT / 2), (a.x, a.y - HEIGHT / 2)
        else:
            tip, tail = (b.x - WIDTH / 2, b.y), (a.x + WIDTH / 2, a.y)
        ax.annotate("", xy=tip, xytext=tail,
                    arrowprops=dict(arrowstyle="->", color="#666666", linewidth=0.9,
                                    shrinkA=2, shrinkB=2))
    ax.axhline(-1.7, color="#bbbbbb", linewidth=0.6, linestyle=":")
    ax.set_xlim(-1.0, 12.2)
    ax.set_ylim(-2.8, 3.5)
    ax.set_aspect("equal")
    ax.axis("off")
    title = "MSANet, the paper's Fig. 2 as the course builds it"
    if here is not None:
        title += f": you are here (notebook {here:02d}, orange)"
    ax.set_title(title, fontsize=10)
    return ax.figure
