"""List files and their primitives, shared by the list builder and the toy generator.

A split list holds one ``<image> <label>`` pair per line, paths relative to the dataset folder
(the PFENet format); a pixel-statistics file (``PIXELS_FORMAT``) holds, per image, the pixel
count of every class. :mod:`msanet_lib.data.lists` builds and reads them for PASCAL and COCO;
:mod:`msanet_lib.data.toy` writes them directly for the toy benchmark it generates.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from msanet_lib.runtime import atomic_write_text

PIXELS_FORMAT = "msanet-class-pixels/1"

Pair = tuple[str, str]  # (image path, label path), relative to the dataset folder


def _pair_from_line(line: str, benchmark: str, source: Path | str, lineno: int) -> Pair:
    parts = line.split()
    if len(parts) == 2:
        return parts[0], parts[1]
    if len(parts) == 1:
        stem = parts[0]
        if benchmark == "coco":
            split = "train2014" if "train2014" in stem else "val2014"
            return f"{split}/{stem}.jpg", f"annotations/{split}/{stem}.png"
        return f"JPEGImages/{stem}.jpg", f"SegmentationClassAug/{stem}.png"
    raise ValueError(
        f"{source}, line {lineno}: expected an image id or '<image> <label>', got {line!r}."
    )


def parse_list_lines(lines: Iterable[str], benchmark: str, source: Path | str = "<list>"
                     ) -> list[Pair]:
    """Pairs from list lines: ``<image> <label>`` pairs or bare ids (VOC ``ImageSets`` and
    SBD ``train_noval.txt`` hold ids; an id ``x`` means ``JPEGImages/x.jpg`` +
    ``SegmentationClassAug/x.png``). Blank lines are skipped; leading ``/`` is kept."""
    pairs = []
    for lineno, raw in enumerate(lines, start=1):
        line = raw.strip()
        if line:
            pairs.append(_pair_from_line(line, benchmark, source, lineno))
    return pairs


def write_pairs(path: Path, pairs: Sequence[Pair]) -> None:
    """Write a split list, one ``<image> <label>`` line per pair."""
    atomic_write_text(Path(path), "".join(f"{i} {lbl}\n" for i, lbl in pairs))


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """The split list's content hash, the key of its cached pixel statistics."""
    h = hashlib.sha1()
    for img, lbl in pairs:
        h.update(f"{img} {lbl}\n".encode())
    return h.hexdigest()


def count_class_pixels(label: np.ndarray, num_classes: int) -> dict[int, int]:
    """``{class id: pixel count}`` of the foreground classes in ``label`` (no 0, no 255)."""
    counts = np.bincount(label.ravel(), minlength=256)
    ids = np.flatnonzero(counts[1 : num_classes + 1]) + 1
    return {int(c): int(counts[c]) for c in ids}
