"""COCO instance annotations -> per-image PNG label maps (COCO-20i's input format).

Every few-shot COCO codebase reads one PNG per image whose pixel values are class ids
1..80 and 0 for background (the convention of PFENet, BAM and HSNet). This module writes them from
``instances_{train,val}2014.json`` without needing pycocotools.

Class ids. COCO's 80 category ids run from 1 to 90 with ten gaps
(12, 26, 29, 30, 45, 66, 68, 69, 71, 83). They are mapped to contiguous ids 1..80 in
ascending category-id order: ``contiguous = 1 + rank of the category id``. So person (1)
-> 1, bicycle (2) -> 2, ..., stop sign (13) -> 12, ..., toothbrush (90) -> 80.
COCO-20i fold i then holds the contiguous ids c with ``(c - 1) % 4 == i``.

Overlaps. Instances are painted **largest first** (by the annotation's ``area``), so a
smaller object lying on a larger one (a cup on a table, a person on a couch) stays
visible; ties keep the file order. Crowd regions (``iscrowd=1``, stored as RLE) are
painted with their class like any other instance.

Geometry. Polygons are rasterised with PIL ``ImageDraw.polygon`` (pixel centres inside
the outline, outline included); RLE masks are decoded exactly by :func:`decode_rle`.
If pycocotools is installed and ``backend="auto"``, it rasterises polygons instead
(faster, and pixel-identical to COCO's own tools); its polygon edges can differ from
PIL's by about one pixel, so pass ``backend="pil"`` for output independent of what is
installed.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw
from tqdm import tqdm

COCO_CATEGORY_IDS: tuple[int, ...] = tuple(
    c for c in range(1, 91) if c not in (12, 26, 29, 30, 45, 66, 68, 69, 71, 83)
)
"""The 80 COCO category ids in ascending order; index + 1 is the contiguous class id."""


def category_to_class(category_ids: Sequence[int]) -> dict[int, int]:
    """Maps category ids to contiguous class ids 1..N in ascending category-id order."""
    ordered = sorted(set(category_ids))
    if len(ordered) > 254:
        raise ValueError(f"{len(ordered)} categories do not fit an 8-bit PNG with 255 = ignore")
    return {cat: i + 1 for i, cat in enumerate(ordered)}


def decode_rle_string(counts: str) -> list[int]:
    """Decodes COCO's compressed RLE string into run lengths.

    The format (the cocoapi's ``rleFrString``): each run length is written in 5-bit groups,
    least significant first, as characters ``chr(48 + group)``; bit 0x20 of a group means
    "more groups follow", bit 0x10 of the last group is the sign. From the fourth run on
    (index >= 3), the value stored is the difference to the run two places earlier.
    """
    runs: list[int] = []
    pos = 0
    while pos < len(counts):
        value, shift, more = 0, 0, True
        while more:
            group = ord(counts[pos]) - 48
            value |= (group & 0x1F) << shift
            more = bool(group & 0x20)
            pos += 1
            shift += 5
            if not more and group & 0x10:
                value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
    return runs


def decode_rle(rle: dict[str, Any]) -> np.ndarray:
    """Decodes an RLE mask (``{"size": [h, w], "counts": list or str}``) to (h, w) bool.

    Runs alternate background/foreground starting with background, over the pixels in
    column-major (Fortran) order, as in the cocoapi.
    """
    try:
        h, w = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(
            f"not an RLE mask (needs 'size' [h, w] and 'counts'): {rle!r:.80}"
        ) from err
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    runs = np.asarray(decode_rle_string(counts) if isinstance(counts, str) else counts, np.int64)
    if (runs < 0).any() or runs.sum() != h * w:
        raise ValueError(
            f"RLE runs sum to {int(runs.sum())} pixels (or are negative) for a {h}x{w} mask; "
            "the annotation is corrupt"
        )
    values = np.arange(len(runs)) % 2 == 1
    flat = np.repeat(values, runs)
    return flat.reshape(w, h).T


def _polygons_mask(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    canvas = Image.new("1", (w, h), 0)
    draw = ImageDraw.Draw(canvas)
    for poly in polygons:
        if len(poly) >= 6:  # at least three (x, y) points
            draw.polygon([float(v) for v in poly], fill=1, outline=1)
    return np.asarray(canvas, dtype=bool)


def _pycocotools_polygons(polygons: Sequence[Sequence[float]], h: int, w: int) -> np.ndarray:
    from pycocotools import mask as mask_utils

    valid = [list(p) for p in polygons if len(p) >= 6]
    if not valid:
        return np.zeros((h, w), bool)
    rle = mask_utils.merge(mask_utils.frPyObjects(valid, h, w))
    return mask_utils.decode(rle).astype(bool)


def _has_pycocotools() -> bool:
    try:
        import pycocotools.mask  # noqa: F401
    except ImportError:
        return False
    return True


def annotation_mask(segmentation: Any, h: int, w: int, backend: str = "pil") -> np.ndarray:
    """Rasterises one annotation's ``segmentation`` (polygons or RLE) to (h, w) bool."""
    if backend == "pycocotools" and isinstance(segmentation, list):
        return _pycocotools_polygons(segmentation, h, w)
    if isinstance(segmentation, list):
        return _polygons_mask(segmentation, h, w)
    if isinstance(segmentation, dict):
        mask = decode_rle(segmentation)
        if mask.shape != (h, w):
            raise ValueError(f"RLE size {mask.shape} differs from the image size {(h, w)}")
        return mask
    raise ValueError(f"unknown segmentation format {type(segmentation).__name__}")


def label_map(
    annotations: Sequence[dict[str, Any]],
    h: int,
    w: int,
    cat_to_class: dict[int, int],
    backend: str = "pil",
) -> np.ndarray:
    """Paints an image's annotations into an (h, w) uint8 map of class ids (0 = background).

    Larger instances (by ``area``) are painted first, smaller ones on top.
    """
    out = np.zeros((h, w), np.uint8)
    ordered = sorted(annotations, key=lambda a: -float(a.get("area", 0.0)))  # stable
    for ann in ordered:
        cls = cat_to_class.get(int(ann["category_id"]))
        if cls is None:
            raise ValueError(
                f"annotation {ann.get('id')} has category_id {ann['category_id']}, which is "
                "not in the file's categories"
            )
        out[annotation_mask(ann["segmentation"], h, w, backend)] = cls
    return out


def write_label_maps(
    annotation_file: Path,
    out_dir: Path,
    *,
    backend: str = "auto",
    overwrite: bool = False,
    progress: bool = True,
) -> int:
    """Writes ``out_dir/<image file stem>.png`` for every image of a COCO instances file.

    Images without annotations get an all-background map, so every image has a label.
    Existing PNGs are kept unless ``overwrite`` (a rerun after an interruption continues);
    each PNG is written to a temporary name and renamed, so none is ever half-written.

    Args:
        annotation_file: ``instances_{train,val}2014.json``.
        out_dir: output folder (created).
        backend: ``"pil"``, ``"pycocotools"`` or ``"auto"`` (pycocotools if installed).

    Returns:
        The number of PNG files written.
    """
    annotation_file, out_dir = Path(annotation_file), Path(out_dir)
    if not annotation_file.is_file():
        raise FileNotFoundError(
            f"COCO annotation file {annotation_file} does not exist; unpack "
            "annotations_trainval2014.zip first (msanet-data download coco)."
        )
    if backend not in ("auto", "pil", "pycocotools"):
        raise ValueError(f"backend must be 'auto', 'pil' or 'pycocotools', got {backend!r}")
    if backend == "auto":
        backend = "pycocotools" if _has_pycocotools() else "pil"
    with open(annotation_file) as f:
        data = json.load(f)
    try:
        images, annotations, categories = data["images"], data["annotations"], data["categories"]
    except KeyError as err:
        raise ValueError(f"{annotation_file} is not a COCO instances file (no {err})") from err
    cat_to_class = category_to_class([c["id"] for c in categories])
    by_image: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for ann in annotations:
        by_image[ann["image_id"]].append(ann)
    out_dir.mkdir(parents=True, exist_ok=True)
    written = 0
    for image in tqdm(images, desc=f"label maps {out_dir.name}", disable=not progress):
        target = out_dir / (Path(image["file_name"]).stem + ".png")
        if target.exists() and not overwrite:
            continue
        labels = label_map(
            by_image.get(image["id"], []),
            int(image["height"]),
            int(image["width"]),
            cat_to_class,
            backend,
        )
        tmp = target.with_name(target.stem + ".tmp.png")
        Image.fromarray(labels).save(tmp)  # uint8 (h, w) -> mode "L"
        os.replace(tmp, target)
        written += 1
    return written
