"""Pictures of few-shot episodes: the supports with their masks, the query with its target.

Uses matplotlib's object API with the Agg canvas (no pyplot state, no display needed).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

from msanet_lib.data.transforms import denormalize

OUTLINE_COLOUR = np.array([255, 230, 0], dtype=np.float32)
IGNORE_COLOUR = np.array([255, 255, 255], dtype=np.float32)


def overlay_mask(image: Tensor, mask: Tensor, dim: float = 0.3) -> np.ndarray:
    """An RGB ``(H, W, 3) uint8`` picture of a normalised ``(3, H, W)`` image that shows the
    ``mask == 1`` pixels as they are, dims everything else to ``dim`` of its brightness
    (so the mask stands out whatever its colour), outlines the mask in yellow and paints
    the ignored (255) pixels white."""
    rgb = denormalize(image.detach().float().cpu()).clamp(0, 255).permute(1, 2, 0).numpy()
    m = mask.detach().cpu().numpy()
    fg = m == 1
    out = np.where(fg[..., None], rgb, dim * rgb)
    edge = np.zeros_like(fg)
    edge[:-1] |= fg[:-1] != fg[1:]
    edge[:, :-1] |= fg[:, :-1] != fg[:, 1:]
    out[edge] = OUTLINE_COLOUR
    out[m == 255] = IGNORE_COLOUR
    return out.round().astype(np.uint8)


def draw_episodes(episodes: Sequence[dict], class_names: dict[int, str] | None = None,
                  prediction: Sequence[Tensor] | None = None,
                  prediction_titles: Sequence[str] | None = None) -> Figure:
    """A figure with one row per episode: K supports (masks overlaid), the query with its
    target mask, and optionally a predicted mask.

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
    fig = Figure(figsize=(2.2 * cols, 2.4 * len(episodes)))
    FigureCanvasAgg(fig)
    for r, ep in enumerate(episodes):
        cid = int(ep["class_id"])
        name = (class_names or {}).get(cid, f"class {cid}")
        panels = [(overlay_mask(ep["support_imgs"][k], ep["support_masks"][k]),
                   f"support {k + 1}") for k in range(shots)]
        panels.append((overlay_mask(ep["query_img"], ep["query_mask"]), f"query: {name}"))
        if prediction is not None:
            title = prediction_titles[r] if prediction_titles else "prediction"
            panels.append((overlay_mask(ep["query_img"], torch.as_tensor(prediction[r])), title))
        for c, (img, title) in enumerate(panels):
            ax = fig.add_subplot(len(episodes), cols, r * cols + c + 1)
            ax.imshow(img)
            ax.set_title(title, fontsize=8)
            ax.axis("off")
    fig.suptitle("Bright: support masks and query target (rest dimmed)",
                 fontsize=9)
    fig.tight_layout()
    return fig


def save_episodes(episodes: Sequence[dict], out: Path | str,
                  class_names: dict[int, str] | None = None) -> Path:
    """Draw ``episodes`` (:func:`draw_episodes`) into the image file ``out``."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    draw_episodes(episodes, class_names).savefig(out, dpi=110)
    return out
