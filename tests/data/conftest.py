"""Tiny fake VOC and COCO trees (a few small PNGs) for the data tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

# name -> list of (class id, y0, y1, x0, x1) rectangles painted in order on a 40 x 48 label.
Spec = dict[str, list[tuple[int, int, int, int, int]]]
H, W = 40, 48


def write_tree(root: Path, spec: Spec, image_dir: str, label_dir: str, *,
               boundary: bool = True) -> None:
    """Images whose colour encodes position (so alignment can be checked) + labels."""
    (root / image_dir).mkdir(parents=True, exist_ok=True)
    (root / label_dir).mkdir(parents=True, exist_ok=True)
    for name, rects in spec.items():
        label = np.zeros((H, W), np.uint8)
        for c, y0, y1, x0, x1 in rects:
            label[y0:y1, x0:x1] = c
            if boundary:
                label[y0, x0:x1] = 255
        img = np.zeros((H, W, 3), np.uint8)
        img[..., 0] = np.arange(W)[None] * 5
        img[..., 1] = np.arange(H)[:, None] * 6
        img[..., 2] = (label.astype(np.int64) * 10) % 256
        Image.fromarray(img).save(root / image_dir / f"{name}.png")
        Image.fromarray(label, "L").save(root / label_dir / f"{name}.png")


@pytest.fixture
def fake_voc(tmp_path: Path) -> Callable[[Spec, Spec], Path]:
    """Build ``tmp/VOCdevkit/VOC2012`` with VOC-style id lists; returns the data root."""

    def make(train: Spec, val: Spec) -> Path:
        voc = tmp_path / "VOCdevkit" / "VOC2012"
        if voc.is_dir():  # already built in this test
            return tmp_path
        write_tree(voc, {**train, **val}, "JPEGImages", "SegmentationClassAug")
        # The PNG images stand in for JPEGs: the list files name them explicitly.
        (voc / "lists").mkdir(parents=True)
        for split, spec in (("train", train), ("val", val)):
            lines = [f"JPEGImages/{n}.png SegmentationClassAug/{n}.png" for n in spec]
            (voc / "lists" / f"{split}.txt").write_text("\n".join(lines) + "\n")
        return tmp_path

    return make


def rects_for(classes: list[int], size: int = 12) -> list[tuple[int, int, int, int, int]]:
    """Non-overlapping squares (size x size) for the given classes, left to right."""
    return [(c, 2, 2 + size, 2 + i * (size + 2), 2 + i * (size + 2) + size)
            for i, c in enumerate(classes)]
