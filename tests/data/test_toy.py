"""The toy benchmark: determinism, class statistics, atomic generation, the same loader."""

from __future__ import annotations

import numpy as np
import pytest

from msanet_lib.data import toy
from msanet_lib.data.datasets import FewShotDataset
from msanet_lib.data.lists import count_class_pixels, episode_lists
from msanet_lib.data.splits import fold_split

SMALL = {"train": 40, "val": 40}


def test_same_seed_same_arrays_and_prefix_stability():
    a_img, a_lab = toy.generate_split(3, "val", 5)
    b_img, b_lab = toy.generate_split(3, "val", 5)
    for x, y in zip(a_img + a_lab, b_img + b_lab):
        np.testing.assert_array_equal(x, y)
    c_img, _ = toy.generate_split(3, "val", 2)  # image i does not depend on the count
    np.testing.assert_array_equal(c_img[1], a_img[1])
    d_img, _ = toy.generate_split(4, "val", 1)
    assert not np.array_equal(d_img[0], a_img[0])
    assert all(img.shape[:2] == lab.shape for img, lab in zip(a_img, a_lab))


def test_class_design_no_single_attribute_identifies_a_class():
    classes = toy.toy_classes()
    for attr in ("shape", "pattern", "hue"):
        values = [getattr(c, attr) for c in classes]
        assert all(values.count(v) == 4 for v in set(values)), attr
    for a, b in (("shape", "pattern"), ("shape", "hue"), ("pattern", "hue")):
        assert len({(getattr(c, a), getattr(c, b)) for c in classes}) == 20
    for f in range(4):  # every novel attribute is seen among the base classes
        split = fold_split("toy", f)
        base = [classes[c - 1] for c in split.base]
        for c in split.novel:
            novel = classes[c - 1]
            assert any(b.shape == novel.shape for b in base)
            assert any(b.pattern == novel.pattern for b in base)
            assert any(b.hue == novel.hue for b in base)


def test_class_statistics_on_a_sample():
    _, labels = toy.generate_split(0, "train", 192)
    counts = [count_class_pixels(lab, 20) for lab in labels]
    objects = np.array([len(c) for c in counts])
    assert 2.0 <= objects.mean() <= 3.0 and objects.max() <= 3 and (objects >= 2).mean() > 0.7
    big = [{c for c, n in d.items() if n >= toy_min()} for d in counts]
    per_class = [sum(c in b for b in big) for c in range(1, 21)]
    assert min(per_class) >= 6, per_class  # 5 supports + a query, in 192 images already
    assert all((lab == 255).any() for lab in labels)  # VOC-like ignore boundaries
    sizes = {lab.shape for lab in labels}
    assert len(sizes) > 1 and all(h <= 128 and w <= 128 for h, w in sizes)


def toy_min() -> int:
    from msanet_lib.data.splits import benchmark_info

    return benchmark_info("toy").min_pixels


def test_ensure_generates_once_and_the_loader_reads_it(tmp_path):
    root = toy.ensure_toy_benchmark(tmp_path / "toy", seed=1, sizes=SMALL)
    meta = toy.read_toy_meta(root)
    assert meta["sizes"] == SMALL and len(meta["classes"]) == 20
    first = (root / "JPEGImages" / "toy_val_00003.jpg").read_bytes()
    assert toy.ensure_toy_benchmark(root) == root  # already there: nothing rewritten
    again = toy.ensure_toy_benchmark(tmp_path / "again", seed=1, sizes=SMALL)
    assert (again / "JPEGImages" / "toy_val_00003.jpg").read_bytes() == first
    with pytest.raises(ValueError, match="seed=1"):
        toy.ensure_toy_benchmark(root, seed=2, sizes=SMALL)
    ds = FewShotDataset(root, "toy", 0, "val", 1, min_pixels=64)
    ep = ds[0]
    assert ep["query_img"].shape == (3, 128, 128) and ep["class_id"] in fold_split("toy", 0).novel
    lists = episode_lists(root, "toy", 0, "train", min_pixels=64)
    assert all(len(v) > 0 for v in lists.class_files.values())


def test_generation_is_atomic(tmp_path, monkeypatch):
    def broken(directory, seed, sizes):
        (directory / "JPEGImages").mkdir(parents=True)
        (directory / "JPEGImages" / "half.jpg").write_bytes(b"x")
        raise KeyboardInterrupt  # interrupted half-way

    monkeypatch.setattr(toy, "generate_toy_benchmark", broken)
    with pytest.raises(KeyboardInterrupt):
        toy.ensure_toy_benchmark(tmp_path / "toy", sizes=SMALL)
    assert list(tmp_path.iterdir()) == []  # no half dataset, no temp folder


def test_foreign_folder_is_left_untouched(tmp_path):
    (tmp_path / "mine.txt").write_text("user data")
    with pytest.raises(FileExistsError, match="not a toy benchmark"):
        toy.ensure_toy_benchmark(tmp_path, sizes=SMALL)
    assert (tmp_path / "mine.txt").read_text() == "user data"


def test_a_generation_finished_meanwhile_by_another_process_is_kept(tmp_path, monkeypatch):
    """Two commands started together on a fresh clone both generate; the second keeps the first's."""
    real = toy.generate_toy_benchmark
    root = tmp_path / "toy"

    def racing(directory, seed, sizes):
        real(root, seed, sizes)  # the other process renames its finished copy into place first
        real(directory, seed, sizes)

    monkeypatch.setattr(toy, "generate_toy_benchmark", racing)
    assert toy.ensure_toy_benchmark(root, sizes=SMALL) == root
    assert toy.read_toy_meta(root)["sizes"] == SMALL
    assert [p.name for p in tmp_path.iterdir()] == ["toy"]  # our copy and temp folder removed
