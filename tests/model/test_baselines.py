"""The reference baselines: all-foreground and the training-free thresholded prototype."""

from __future__ import annotations

import torch
from torch import nn

from msanet_lib.backbones import BackboneOutput
from msanet_lib.model.baselines import AllForeground, PrototypeBaseline, choose_threshold


class Identity(nn.Module):
    """A stand-in backbone whose every stage is the image itself (features = colours)."""

    def forward(self, x: torch.Tensor) -> BackboneOutput:
        return BackboneOutput([x] * 5, [])


def _two_colour_episode() -> dict:
    """Query = support: left half red (the class, mask 1), right half blue; 255 on one row."""
    img = torch.zeros(1, 3, 8, 8)
    img[:, 0, :, :4] = 1.0
    img[:, 2, :, 4:] = 1.0
    mask = torch.zeros(1, 8, 8, dtype=torch.long)
    mask[:, :, :4] = 1
    support_mask = mask.clone()
    support_mask[:, 0] = 255  # ignore pixels count as background for the prototype
    return {"query_img": img, "support_imgs": img[:, None], "support_masks": support_mask[:, None],
            "query_mask": mask}


def test_prototype_baseline_segments_the_support_colour() -> None:
    ep = _two_colour_episode()
    model = PrototypeBaseline(Identity(), threshold=0.5)
    sim = model.similarity(ep["query_img"], ep["support_imgs"], ep["support_masks"])
    # red prototype: cosine 1 on the left half, 0 on the right; min-max keeps 1 and 0
    assert torch.allclose(sim[0, :, :4], torch.ones(8, 4), atol=1e-5)
    assert torch.allclose(sim[0, :, 4:], torch.zeros(8, 4), atol=1e-5)
    final, meta, base = model(ep["query_img"], ep["support_imgs"], ep["support_masks"])
    assert base is None and torch.equal(final, meta)
    assert torch.equal(final.argmax(1), ep["query_mask"])


def test_threshold_is_chosen_by_base_class_iou() -> None:
    ep = _two_colour_episode()
    model = PrototypeBaseline(Identity())
    best, scores = choose_threshold(model, [ep], [0.5, 1.5])
    assert best == 0.5 and scores == [1.0, 0.0]  # nothing is above 1.5: IoU 0


def test_all_foreground_predicts_every_pixel() -> None:
    x = torch.zeros(2, 3, 5, 6)
    final, _, _ = AllForeground()(x, x[:, None], torch.zeros(2, 1, 5, 6))
    assert final.shape == (2, 2, 5, 6) and bool((final.argmax(1) == 1).all())

