"""Pictures of few-shot episodes: the supports with their masks, the query with its target.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from msanet_lib.viz.style import outline, panels, role_legend, show_image


def draw_episodes(episodes: Sequence[dict], class_names: dict[int, str] | None = None,
                  prediction: Sequence[Tensor] | None = None,
                  prediction_titles: Sequence[str] | None = None) -> Figure:
    """A figure with one row per episode: K supports, the query, and optionally a prediction,
    in the course's visual language (:mod:`msanet_lib.viz.style`): images untouched, the
    support masks, the query's target and the prediction as outlines in their role colours.

    Args:
        episodes: items of :class:`~msanet_lib.data.FewShotDataset`.
        class_names: class id -> name for the row titles.
        prediction: per episode a ``(H, W)`` 0/1 mask to show in an extra column.
        prediction_titles: per episode the title of that column (default "prediction").
    """
    if not episodes:
        raise ValueError("draw_episodes needs at least one episode.")
    shots = episodes[0]["support_imgs"].shape[0]
    cols = shots + 1 + (prediction is not None)
    fig, axes = panels(len(episodes), cols, size=2.3, pyplot=False)
    for r, ep in enumerate(episodes):
        cid = int(ep["class_id"])
        name = (class_names or {}).get(cid, f"class {cid}")
        for k in range(shots):
            show_image(axes[r, k], ep["support_imgs"][k], f"support {k + 1}")
            outline(axes[r, k], ep["support_masks"][k], "support")
        show_image(axes[r, shots], ep["query_img"], f"query: {name}")
        outline(axes[r, shots], ep["query_mask"], "truth")
        if prediction is not None:
            ax = axes[r, shots + 1]
            show_image(ax, ep["query_img"],
                       prediction_titles[r] if prediction_titles else "prediction")
            outline(ax, ep["query_mask"], "truth")
            outline(ax, torch.as_tensor(prediction[r]), "prediction")
    role_legend(fig, ("support", "truth") + (("prediction",) if prediction is not None else ()))
    return fig


def save_episodes(episodes: Sequence[dict], out: Path | str,
                  class_names: dict[int, str] | None = None) -> Path:
    """Draw ``episodes`` (:func:`draw_episodes`) into the image file ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_episodes(episodes, class_names).savefig(out, dpi=110)
    return out
