"""Fold splits, list building (both regimes), caches and the authors' list format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from msanet_lib.data.lists import (
    dataset_dir,
    episode_lists,
    read_authors_lists,
    write_authors_lists,
    write_split_list,
)
from msanet_lib.data.splits import fold_split

from .conftest import rects_for


def test_pascal_folds_by_hand():
    s0, s3 = fold_split("pascal", 0), fold_split("pascal", 3)
    assert s0.novel == (1, 2, 3, 4, 5) and s0.base == tuple(range(6, 21))
    assert s3.novel == (16, 17, 18, 19, 20) and s3.base == tuple(range(1, 16))
    assert fold_split("pascal", 2).base == (*range(1, 11), *range(16, 21))
    assert fold_split("toy", 1) == fold_split("pascal", 1).__class__(
        "toy", 1, fold_split("pascal", 1).base, (6, 7, 8, 9, 10), 20)


def test_coco_interleaved_and_contiguous():
    for f in range(4):
        s = fold_split("coco", f)
        assert s.novel == tuple(range(f + 1, 81, 4)) and len(s.novel) == 20
        assert s.base == tuple(sorted(set(range(1, 81)) - set(s.novel)))
    assert fold_split("coco", 1).novel[:3] == (2, 6, 10)
    assert fold_split("coco", 0, "contiguous").novel == tuple(range(1, 21))
    with pytest.raises(ValueError, match="fold"):
        fold_split("pascal", 4)
    with pytest.raises(ValueError, match="benchmark"):
        fold_split("voc", 0)


def test_base_lookup_remaps_and_keeps_ignore():
    s = fold_split("pascal", 1)  # novel 6..10
    table = s.base_lookup()
    label = np.array([[0, 1, 5, 6, 10], [11, 20, 255, 7, 15]], np.uint8)
    expected = np.array([[0, 1, 5, 0, 0], [6, 15, 255, 0, 10]])
    np.testing.assert_array_equal(table[label], expected)


TRAIN = {
    "a": rects_for([6]),            # base only -> both regimes
    "b": rects_for([6, 1]),         # base + novel -> PFENet only
    "c": rects_for([1]),            # novel only -> neither
    "d": rects_for([7], size=3),    # base below the area threshold -> neither
    "e": [*rects_for([7]), (8, 30, 33, 30, 33)],  # 7 big, 8 tiny -> listed for 7 only
}
VAL = {"v1": rects_for([1]), "v2": rects_for([6, 2]), "v3": rects_for([6]),
       "v4": rects_for([3], size=3)}


def test_list_rules_both_regimes(fake_voc):
    root = dataset_dir("pascal", fake_voc(TRAIN, VAL))
    bam = episode_lists(root, "pascal", 0, "train", regime="bam", min_pixels=100)
    pfe = episode_lists(root, "pascal", 0, "train", regime="pfenet", min_pixels=100)
    val = episode_lists(root, "pascal", 0, "val", min_pixels=100)

    def names(pairs):
        return [Path(p[1]).stem for p in pairs]

    assert names(bam.images) == ["a", "e"]
    assert names(pfe.images) == ["a", "b", "e"]
    assert names(bam.class_files[6]) == ["a"] and names(pfe.class_files[6]) == ["a", "b"]
    assert names(bam.class_files[7]) == ["e"] and bam.class_files[8] == []
    assert names(val.images) == ["v1", "v2"]
    assert names(val.class_files[1]) == ["v1"] and names(val.class_files[2]) == ["v2"]
    assert 6 not in val.class_files  # base classes never become val support lists


def test_lists_are_cached_and_rebuilt_when_the_split_changes(fake_voc):
    root = dataset_dir("pascal", fake_voc(TRAIN, VAL))
    first = episode_lists(root, "pascal", 0, "train", min_pixels=100)
    cache = Path(first.source)
    assert cache.is_file() and (root / "lists" / "pixels_train.json").is_file()
    again = episode_lists(root, "pascal", 0, "train", min_pixels=100)
    assert again.images == first.images and again.class_files == first.class_files
    (root / "lists" / "train.txt").write_text("JPEGImages/a.png SegmentationClassAug/a.png\n")
    assert [p[1] for p in episode_lists(root, "pascal", 0, "train", min_pixels=100).images] == [
        "SegmentationClassAug/a.png"]


def test_write_split_list_merges_ids_without_duplicates(tmp_path):
    (tmp_path / "voc.txt").write_text("x1\nx2\n")
    (tmp_path / "sbd.txt").write_text("x2\nx3\n\n")
    out = write_split_list(tmp_path, "pascal", "train", ["voc.txt", tmp_path / "sbd.txt"])
    assert out.read_text().splitlines() == [
        f"JPEGImages/{i}.jpg SegmentationClassAug/{i}.png" for i in ("x1", "x2", "x3")]


def test_read_authors_lists_reroots_and_round_trips(tmp_path, fake_voc):
    root = dataset_dir("pascal", fake_voc(TRAIN, VAL))
    prefix = "../data/VOCdevkit2012/VOC2012/"
    (tmp_path / "data_list_0.txt").write_text(
        f"{prefix}JPEGImages/a.png {prefix}SegmentationClassAug/a.png\n")
    (tmp_path / "sub_class_file_list_0.txt").write_text(
        repr({6: [(f"{prefix}JPEGImages/a.png", f"{prefix}SegmentationClassAug/a.png")], 7: []}))
    lists = read_authors_lists(tmp_path / "data_list_0.txt",
                               tmp_path / "sub_class_file_list_0.txt", root)
    assert lists.images == [("JPEGImages/a.png", "SegmentationClassAug/a.png")]
    assert lists.class_files == {6: lists.images, 7: []}
    out = tmp_path / "export"
    data, sub = write_authors_lists(lists, out, 0)
    back = read_authors_lists(data, sub)
    assert back.images == lists.images and back.class_files == lists.class_files


def test_authors_dict_is_parsed_not_executed(tmp_path):
    marker = tmp_path / "pwned"
    (tmp_path / "d.txt").write_text("a b\n")
    (tmp_path / "s.txt").write_text(f"__import__('pathlib').Path({str(marker)!r}).touch()")
    with pytest.raises(ValueError, match="dict literal"):
        read_authors_lists(tmp_path / "d.txt", tmp_path / "s.txt")
    assert not marker.exists()
