"""The course's one visual language, defined once.

* **Masks are outlines, never tints**: a tinted mask changes the hue of the pixels under it,
  and on the toy benchmark hue is what defines a class (a purple ring under a red tint looks
  red). :func:`outline` draws the 0/1 boundary of a mask as a line on top of the untouched
  image.
* **One colour per role** (:data:`ROLE_COLOURS`): the support mask, the query's ground truth
  and the model's prediction are always drawn in the same colours, in every notebook, with a
  line style each so the roles stay apart in grey print too.
* **Perceptual colour maps**: :data:`SEQUENTIAL` (viridis) for values with an order
  (similarities, probabilities, prior masks) and :data:`DIVERGING` (a symmetric scale around 0)
  for signed values (differences, logits). No rainbow ``jet``: its bright bands invent edges.
* **Shared scales where panels are compared** (:func:`shared_limits`), so equal colours mean
  equal values across a row.
* **No overlapping titles**: every figure uses ``layout="constrained"`` (:func:`panels`).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from torch import Tensor

from msanet_lib.data.transforms import denormalize

SEQUENTIAL = "viridis"
DIVERGING = "RdBu_r"
# Distinct from each other and from the toy classes' saturated hues by lightness and style.
ROLE_COLOURS = {"support": "#ffd60a", "truth": "#00e5ff", "prediction": "#ff3df5"}
ROLE_STYLES = {"support": "solid", "truth": "solid", "prediction": "dashed"}
ROLE_LABELS = {"support": "support mask", "truth": "ground truth", "prediction": "prediction"}


def _numpy(x: Tensor | np.ndarray) -> np.ndarray:
    if isinstance(x, Tensor):
        return x.detach().float().cpu().numpy()
    return np.asarray(x, dtype=np.float32)


def panels(rows: int, cols: int, *, size: float = 2.4, pyplot: bool = True,
           **kwargs: Any) -> tuple[Figure, np.ndarray]:
    """A ``rows x cols`` grid of axes (always a 2-D array) in a constrained-layout figure,
    ``size`` inches per panel. ``pyplot=False`` builds it off-screen (for files)."""
    figsize = kwargs.pop("figsize", (size * cols, size * rows))
    if pyplot:
        import matplotlib.pyplot as plt  # only where a figure is shown inline

        fig, axes = plt.subplots(rows, cols, figsize=figsize, layout="constrained",
                                 squeeze=False, **kwargs)
        return fig, axes
    fig = Figure(figsize=figsize, layout="constrained")
    FigureCanvasAgg(fig)
    return fig, np.asarray(fig.subplots(rows, cols, squeeze=False, **kwargs))


def image_rgb(image: Tensor | np.ndarray) -> np.ndarray:
    """A normalised ``(3, H, W)`` tensor (or an ``(H, W, 3)`` uint8 array) as ``(H, W, 3)``
    floats in [0, 1] for ``imshow``."""
    if isinstance(image, Tensor) and image.dim() == 3 and image.shape[0] == 3:
        rgb = denormalize(image.detach().float().cpu()).clamp(0, 255).permute(1, 2, 0)
        return rgb.numpy() / 255.0
    arr = np.asarray(image)
    return arr / 255.0 if arr.dtype == np.uint8 else arr


def show_image(ax: Axes, image: Tensor | np.ndarray, title: str | None = None) -> None:
    """Draw an image untouched, without ticks, with an optional title."""
    ax.imshow(image_rgb(image))
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)


def outline(ax: Axes, mask: Tensor | np.ndarray, role: str = "truth",
            size: tuple[int, int] | None = None, linewidth: float = 1.8) -> None:
    """Draw the boundary of the ``mask == 1`` pixels in the colour of ``role``.

    Args:
        mask: ``(h, w)`` 0/1 mask (255 = ignore, drawn as background). A mask at a lower
            resolution than the image is stretched over ``size = (H, W)`` with each cell
            keeping its square footprint (nearest neighbour, never smoothed).
        role: ``"support"``, ``"truth"`` or ``"prediction"`` (:data:`ROLE_COLOURS`).
    """
    if role not in ROLE_COLOURS:
        raise ValueError(f"role must be one of {sorted(ROLE_COLOURS)}, not {role!r}.")
    m = (_numpy(mask) == 1).astype(np.float32)
    if size is not None and m.shape != tuple(size):
        rows = (np.arange(size[0]) * m.shape[0] // size[0]).clip(0, m.shape[0] - 1)
        cols = (np.arange(size[1]) * m.shape[1] // size[1]).clip(0, m.shape[1] - 1)
        m = m[rows][:, cols]
    if m.any() and not m.all():
        ax.contour(m, levels=[0.5], colors=[ROLE_COLOURS[role]], linewidths=linewidth,
                   linestyles=ROLE_STYLES[role])


def role_legend(where: Axes | Figure, roles: Iterable[str] = ("support", "truth", "prediction"),
                **kwargs: Any) -> None:
    """A legend that names the outline colours used in the figure."""
    handles = [Line2D([], [], color=ROLE_COLOURS[r], linestyle=ROLE_STYLES[r], linewidth=2,
                      label=ROLE_LABELS[r]) for r in roles]
    kwargs.setdefault("fontsize", 8)
    if isinstance(where, Figure):
        kwargs.setdefault("loc", "outside lower center")
        kwargs.setdefault("ncols", len(handles))
    where.legend(handles=handles, **kwargs)


def shared_limits(maps: Sequence[Tensor | np.ndarray], signed: bool = False) -> tuple[float, float]:
    """One colour range for maps that are compared side by side: ``(min, max)`` over all of
    them, or ``(-m, m)`` with ``m`` the largest magnitude when ``signed``."""
    values = [_numpy(m) for m in maps]
    if signed:
        m = max(float(np.abs(v).max()) for v in values) or 1.0
        return -m, m
    return min(float(v.min()) for v in values), max(float(v.max()) for v in values)


def show_map(ax: Axes, values: Tensor | np.ndarray, title: str | None = None, *,
             signed: bool = False, limits: tuple[float, float] | None = None,
             colorbar: bool = False, size: tuple[int, int] | None = None) -> Any:
    """Draw a 2-D map of values: :data:`SEQUENTIAL`, or :data:`DIVERGING` centred on 0 when
    ``signed``. ``limits`` fixes the colour range (use :func:`shared_limits` for a row of
    compared maps); ``size = (H, W)`` stretches a coarse map over the image's extent so its
    cells line up with an image drawn beside it. Returns the ``AxesImage``."""
    v = _numpy(values)
    if limits is None:
        limits = shared_limits([v], signed=signed)
    extent = None if size is None else (-0.5, size[1] - 0.5, size[0] - 0.5, -0.5)
    im = ax.imshow(v, cmap=DIVERGING if signed else SEQUENTIAL, vmin=limits[0],
                   vmax=limits[1], interpolation="nearest", extent=extent)
    ax.set_xticks([])
    ax.set_yticks([])
    if title is not None:
        ax.set_title(title, fontsize=9)
    if colorbar:
        ax.figure.colorbar(im, ax=ax, shrink=0.8)
    return im


def use_inline() -> None:
    """Switch a notebook back to the inline backend after an interactive (ipympl) cell, so
    the next figures are plain images again."""
    try:
        from IPython import get_ipython
    except ImportError:  # not inside IPython: nothing to switch
        return
    shell = get_ipython()
    if shell is not None:
        shell.run_line_magic("matplotlib", "inline")

