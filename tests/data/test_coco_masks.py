"""COCO label maps from hand-made annotations (no pycocotools needed)."""

from __future__ import annotations

import json
import random
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from msanet_lib.data.coco_masks import (
    COCO_CATEGORY_IDS,
    category_to_class,
    decode_rle,
    decode_rle_string,
    label_map,
    write_label_maps,
)


def encode_rle_string(runs: list[int]) -> str:
    """Reference encoder written from the cocoapi format description (rleToString)."""
    out = []
    for i, run in enumerate(runs):
        x = run - runs[i - 2] if i > 2 else run
        more = True
        while more:
            c = x & 0x1F
            x >>= 5
            more = x != -1 if c & 0x10 else x != 0
            if more:
                c |= 0x20
            out.append(chr(c + 48))
    return "".join(out)


def test_category_mapping_is_ascending_and_contiguous() -> None:
    assert len(COCO_CATEGORY_IDS) == 80
    mapping = category_to_class(COCO_CATEGORY_IDS)
    assert mapping[1] == 1  # person
    assert mapping[11] == 11  # fire hydrant, before the first gap (12)
    assert mapping[13] == 12  # stop sign
    assert mapping[90] == 80  # toothbrush
    assert sorted(mapping.values()) == list(range(1, 81))


def test_decode_rle_string_hand_value() -> None:
    # "324O": 3, 2, 4, then the fourth run is stored as a delta to run 2: 'O' = -1 -> 2 - 1.
    assert decode_rle_string("324O") == [3, 2, 4, 1]
    assert encode_rle_string([3, 2, 4, 1]) == "324O"


def test_decode_rle_string_round_trip() -> None:
    rng = random.Random(0)
    for _ in range(50):
        runs = [rng.randrange(0, 5000) for _ in range(rng.randrange(1, 30))]
        assert decode_rle_string(encode_rle_string(runs)) == runs


def test_decode_rle_is_column_major_for_both_count_formats() -> None:
    # 2 x 5 mask, pixels in column order: 0 0 0 1 1 0 0 0 0 1
    expected = np.array([[0, 0, 1, 0, 0], [0, 1, 0, 0, 1]], bool)
    assert (decode_rle({"size": [2, 5], "counts": [3, 2, 4, 1]}) == expected).all()
    assert (decode_rle({"size": [2, 5], "counts": "324O"}) == expected).all()


def test_decode_rle_rejects_wrong_total() -> None:
    with pytest.raises(ValueError, match="corrupt"):
        decode_rle({"size": [2, 5], "counts": [3, 2]})


def rect(x0: float, y0: float, x1: float, y1: float) -> list[list[float]]:
    return [[x0, y0, x1, y0, x1, y1, x0, y1]]


def test_polygon_is_filled_with_its_outline() -> None:
    mapping = category_to_class(COCO_CATEGORY_IDS)
    ann = {"id": 1, "category_id": 2, "segmentation": rect(1, 1, 4, 3), "area": 6.0}
    out = label_map([ann], 5, 6, mapping)
    expected = np.zeros((5, 6), np.uint8)
    expected[1:4, 1:5] = 2
    assert (out == expected).all()


def test_larger_instances_are_painted_first() -> None:
    mapping = category_to_class(COCO_CATEGORY_IDS)
    small = {"id": 1, "category_id": 13, "segmentation": rect(2, 2, 3, 3), "area": 1.0}
    large = {"id": 2, "category_id": 1, "segmentation": rect(0, 0, 5, 5), "area": 25.0}
    out = label_map([small, large], 6, 6, mapping)  # the small one is listed first
    assert out[2, 2] == 12  # stop sign (category 13) on top of the person
    assert out[0, 0] == 1
    assert out[5, 5] == 1


def test_write_label_maps(tmp_path: Path) -> None:
    h, w = 4, 5
    crowd = {"size": [h, w], "counts": encode_rle_string([1, 3, 16])}  # column 0, rows 1..3
    data = {
        "images": [
            {"id": 7, "file_name": "COCO_val2014_000000000007.jpg", "height": h, "width": w},
            {"id": 9, "file_name": "COCO_val2014_000000000009.jpg", "height": h, "width": w},
        ],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 90, "segmentation": rect(3, 0, 4, 1),
             "area": 4.0, "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 44, "segmentation": crowd,
             "area": 3.0, "iscrowd": 1},
        ],
        "categories": [{"id": c, "name": str(c)} for c in COCO_CATEGORY_IDS],
    }
    ann_file = tmp_path / "instances_val2014.json"
    ann_file.write_text(json.dumps(data))
    out_dir = tmp_path / "val2014"
    assert write_label_maps(ann_file, out_dir, backend="pil", progress=False) == 2
    first = np.asarray(Image.open(out_dir / "COCO_val2014_000000000007.png"))
    expected = np.zeros((h, w), np.uint8)
    expected[0:2, 3:5] = 80  # toothbrush
    expected[1:4, 0] = 40  # category 44 (bottle) is the 40th category
    assert first.dtype == np.uint8
    assert (first == expected).all()
    empty = np.asarray(Image.open(out_dir / "COCO_val2014_000000000009.png"))
    assert (empty == 0).all()
    # A second run keeps the existing files.
    assert write_label_maps(ann_file, out_dir, backend="pil", progress=False) == 0
    assert not list(out_dir.glob("*.tmp.png"))


def test_missing_annotation_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="instances_train2014.json"):
        write_label_maps(tmp_path / "instances_train2014.json", tmp_path / "out")
