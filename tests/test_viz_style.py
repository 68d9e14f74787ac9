"""The course's visual language (``msanet_lib.viz.style``), its roadmap and its leaderboard."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import numpy as np
import pytest
import torch
from matplotlib.colors import to_hex

from msanet_lib import course
from msanet_lib.viz import roadmap, style

matplotlib.use("Agg")


def test_outline_draws_the_mask_boundary_in_the_role_colour_without_tinting() -> None:
    fig, axes = style.panels(1, 1, pyplot=False)
    ax = axes[0, 0]
    image = np.full((16, 16, 3), 0.5)
    style.show_image(ax, image)
    mask = torch.zeros(16, 16)
    mask[4:12, 4:12] = 1
    style.outline(ax, mask, "prediction")
    (contour,) = [c for c in ax.collections]
    assert to_hex(contour.get_edgecolor()[0]) == style.ROLE_COLOURS["prediction"]
    # the image under the outline keeps its colours
    assert np.array_equal(ax.images[0].get_array(), image)
    paths = contour.get_paths()
    xs = np.concatenate([p.vertices[:, 0] for p in paths])
    assert 3 <= xs.min() < 4.5 and 10.5 < xs.max() <= 12  # the boundary between cells 3|4, 11|12


def test_outline_of_a_coarse_mask_covers_the_image_and_skips_empty_masks() -> None:
    fig, axes = style.panels(1, 1, pyplot=False)
    ax = axes[0, 0]
    style.outline(ax, torch.zeros(4, 4), "truth")
    assert not ax.collections
    coarse = torch.zeros(4, 4)
    coarse[2:, 2:] = 1  # the lower-right quarter of a 32 x 32 image
    style.outline(ax, coarse, "truth", size=(32, 32))
    xs = np.concatenate([p.vertices[:, 0] for p in ax.collections[0].get_paths()])
    assert 15 <= xs.min() <= 16.5
    with pytest.raises(ValueError, match="role"):
        style.outline(ax, coarse, "target")


def test_shared_limits_are_common_and_symmetric_when_signed() -> None:
    a, b = torch.tensor([[0.0, 2.0]]), torch.tensor([[-3.0, 1.0]])
    assert style.shared_limits([a, b]) == (-3.0, 2.0)
    assert style.shared_limits([a, b], signed=True) == (-3.0, 3.0)
    fig, axes = style.panels(1, 1, pyplot=False)
    im = style.show_map(axes[0, 0], b, signed=True)
    assert im.get_cmap().name == style.DIVERGING and im.get_clim() == (-3.0, 3.0)


def test_roadmap_highlights_only_the_boxes_of_its_notebook() -> None:
    fig = roadmap.roadmap(here=7)
    faces = [to_hex(p.get_facecolor()) for p in fig.axes[0].patches]
    here = [b.key for b in roadmap.BOXES if b.notebook == 7]
    assert faces.count(roadmap.HERE) == len(here) == 2  # base learner and ensemble
    assert faces.count(roadmap.DONE) == sum(b.notebook < 7 for b in roadmap.BOXES)
    assert "notebook 07" in fig.axes[0].get_title()


def _results(tmp_path: Path) -> Path:
    def run(m: float) -> dict:
        return {"miou": m, "episodes": 10, "seeds": [510], "iterations": 50}

    fold = {"all_foreground_1shot": {"miou": 5.0, "episodes": 10, "seeds": [510]},
            "prototype_1shot": {"miou": 40.0, "episodes": 10, "seeds": [510], "threshold": 0.7},
            "1shot": {"miou": 60.0, "episodes": 10, "seeds": [510, 365]}}
    labels = [label for _, label, source in course.LEADERBOARD_ROWS if source == "ablation"]
    ablation = {label: {"runs": [run(m), run(m + 2)], "miou_mean": m + 1, "miou_std": 1.41}
                for label, m in zip(labels, (20.0, 45.0, 47.0, 50.0))}
    (tmp_path / "fold0.json").write_text(json.dumps(fold))
    (tmp_path / "ablation.json").write_text(json.dumps(ablation))
    return tmp_path


def test_leaderboard_grows_row_by_row_in_the_course_order(tmp_path: Path) -> None:
    results = _results(tmp_path)
    short = course.leaderboard("prototype", results)
    assert [r[0] for r in short.rows] == [label for _, label, _ in course.LEADERBOARD_ROWS[:2]]
    full = course.leaderboard("shipped", results)
    assert len(full.rows) == len(course.LEADERBOARD_ROWS)
    assert full.value("multi_similarity") == 46.0 and full.value("shipped") == 60.0
    assert "46.00 ± 1.41" in str(full) and "2 training seeds" in str(full)
    with pytest.raises(KeyError, match="attention"):
        short.value("attention")
    with pytest.raises(ValueError, match="upto"):
        course.leaderboard("resnet", results)
    with pytest.raises(FileNotFoundError, match="train_toy_models.py evaluate"):
        course.leaderboard("shipped", tmp_path / "missing")
