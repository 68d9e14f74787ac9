"""Episode sampling, labels, determinism, collation and the bad-data errors."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from msanet_lib.data.datasets import BaseClassDataset, FewShotDataset, collate_episodes
from msanet_lib.data.lists import dataset_dir
from msanet_lib.data.transforms import Compose

from .conftest import rects_for

# Fold 0: base 6..20, novel 1..5. Class 6 in 7 images, class 7 in 3, novel 1 in 5 val images.
TRAIN = {f"t{i}": rects_for([6, 7] if i < 3 else [6]) for i in range(7)}
VAL = {**{f"v{i}": rects_for([1, 6]) for i in range(5)}, "w0": rects_for([2, 3], size=3)}
RAW = Compose([])  # no augmentation: tensors of the original image and labels


def make(fake_voc, split="train", shots=1, **kw):
    return FewShotDataset(fake_voc(TRAIN, VAL), "pascal", 0, split, shots, transform=RAW,
                          min_pixels=100, **kw)


def test_episode_content_train(fake_voc):
    ds = make(fake_voc, shots=2)
    assert len(ds) == 7
    for i in range(len(ds)):
        ep = ds[i]
        assert ep["class_id"] in (6, 7) and ep["class_index"] == ep["class_id"] - 6
        assert ep["query_name"] not in ep["support_names"]
        assert len(set(ep["support_names"])) == 2
        raw = np.asarray(Image.open(ds.root / ep["query_name"]))
        expected = np.where(raw == 255, 255, (raw == ep["class_id"]).astype(np.int64))
        np.testing.assert_array_equal(ep["query_mask"].numpy(), expected)
        base = np.where(raw == 255, 255, np.where(raw >= 6, raw - 5, 0))
        np.testing.assert_array_equal(ep["query_base_label"].numpy(), base)
        assert ep["support_imgs"].shape == (2, 3, 40, 48) and ep["support_masks"].shape == (2, 40, 48)
        assert ((ep["support_masks"] == 1).flatten(1).sum(1) > 0).all()
        assert "query_raw_label" not in ep


def test_supports_stacked_in_reverse_draw_order(fake_voc):
    ds = make(fake_voc, shots=2)
    for i in range(len(ds)):
        _, drawn = ds.sample(i, ds.episode_rng(i))
        assert ds[i]["support_names"] == [p[1] for p in drawn[::-1]]


def test_determinism_independent_of_order_workers_and_epoch(fake_voc):
    ds = make(fake_voc, shots=2, seed=7)
    forward = [ds[i] for i in range(len(ds))]
    backward = [ds[i] for i in reversed(range(len(ds)))][::-1]
    for a, b in zip(forward, backward):
        assert a["support_names"] == b["support_names"] and a["class_id"] == b["class_id"]
        assert torch.equal(a["support_imgs"], b["support_imgs"])
    loader = DataLoader(ds, batch_size=3, num_workers=2, collate_fn=collate_episodes)
    names = [n for batch in loader for n in batch["support_names"]]
    assert names == [ep["support_names"] for ep in forward]
    draws = {tuple(make(fake_voc, shots=2, seed=s)[0]["support_names"]) for s in range(12)}
    assert len(draws) > 1  # the seed matters
    ds.set_epoch(1)
    assert [ds[i]["support_names"] for i in range(7)] != [e["support_names"] for e in forward]


def test_val_episodes_raw_label_and_cycling(fake_voc):
    ds = make(fake_voc, split="val", episodes=12)
    assert len(ds) == 12 and len(ds.lists.images) == 5  # w0 has no novel class >= 100 px
    ep = ds[6]
    assert ep["query_name"] == ds[1]["query_name"]  # cycles through the queries in order
    assert ep["class_id"] == 1 and ep["class_index"] == 0
    assert torch.equal(ep["query_raw_label"], ep["query_mask"])
    assert set(ep["query_base_label"].unique().tolist()) <= {0, 1, 255}  # class 6 -> 1
    assert torch.equal(ep["query_raw_base_label"], ep["query_base_label"])
    batch = collate_episodes([ds[0], ds[1]])
    assert batch["query_img"].shape == (2, 3, 40, 48)
    assert batch["support_imgs"].shape == (2, 1, 3, 40, 48)
    assert batch["class_id"].tolist() == [1, 1] and isinstance(batch["query_raw_label"], list)


def test_default_transforms_give_square_tensors(fake_voc):
    root = fake_voc(TRAIN, VAL)
    tr = FewShotDataset(root, "pascal", 0, "train", 2, image_size=32, min_pixels=100)
    ep = tr[0]
    assert ep["query_img"].shape == (3, 32, 32) and ep["support_masks"].shape == (2, 32, 32)
    va = FewShotDataset(root, "pascal", 0, "val", 1, image_size=41, min_pixels=100)
    ep = va[0]
    assert ep["query_img"].shape == (3, 41, 41) and ep["query_raw_label"].shape == (40, 48)
    assert (ep["query_mask"][:, 40:] == 255).all()  # 48 wide -> 40 wide, pasted top-left


def test_hsnet_protocol_items_are_stretched_and_scored_at_that_size(fake_voc):
    from msanet_lib.data.transforms import hsnet_test_transform, nearest_resize

    root = fake_voc(TRAIN, VAL)
    authors = FewShotDataset(root, "pascal", 0, "val", 1, transform=RAW, min_pixels=100)
    hsnet = FewShotDataset(root, "pascal", 0, "val", 1, min_pixels=100,
                           transform=hsnet_test_transform(64), score_size=64)
    a, h = authors[2], hsnet[2]
    assert a["query_name"] == h["query_name"] and a["class_id"] == h["class_id"]
    assert h["query_img"].shape == (3, 64, 64) and h["support_imgs"].shape == (1, 3, 64, 64)
    # 40 x 48 -> 64 x 64: the label is nearest-resized (no 255 padding), and the label the
    # protocol scores against is that same 64 x 64 label, not the original 40 x 48 one
    assert torch.equal(h["query_mask"], nearest_resize(a["query_raw_label"], 64))
    assert torch.equal(h["query_raw_label"], h["query_mask"])
    assert torch.equal(h["query_raw_base_label"], nearest_resize(a["query_raw_base_label"], 64))
    assert a["query_raw_label"].shape == (40, 48)
    with pytest.raises(ValueError, match="score_size=0"):
        FewShotDataset(root, "pascal", 0, "val", 1, min_pixels=100, score_size=0)


def test_base_class_dataset(fake_voc):
    root = fake_voc(TRAIN, VAL)
    ds = BaseClassDataset(root, "pascal", 0, "val", transform=RAW)
    assert len(ds) == 6  # every val image, as BAM's train_base
    item = ds[0]
    raw = np.asarray(Image.open(ds.root / item["name"]))
    expected = np.where(raw == 255, 255, np.where(raw >= 6, raw - 5, 0))
    np.testing.assert_array_equal(item["raw_label"].numpy(), expected)
    np.testing.assert_array_equal(item["label"].numpy(), expected)
    # Pre-generated base annotations are read instead when given.
    base_root = root / "base"
    (base_root / "val" / "0").mkdir(parents=True)
    for pair in ds.pairs:
        name = pair[1].split("/")[-1]
        Image.fromarray(np.full((40, 48), 3, np.uint8), "L").save(base_root / "val" / "0" / name)
    ds2 = BaseClassDataset(root, "pascal", 0, "val", transform=RAW, base_data_root=base_root)
    assert (ds2[0]["label"] == 3).all()


# ---------------------------------------------------------------- bad data


def test_missing_dataset_names_path_and_command(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        FewShotDataset(tmp_path / "nowhere", "pascal", 0, "val", 1)
    msg = str(err.value)
    assert str(tmp_path / "nowhere") in msg and "msanet-data download pascal --root data/" in msg
    with pytest.raises(FileNotFoundError, match="msanet-data download coco"):
        dataset_dir("coco", tmp_path)


def test_unreadable_image_names_the_file(fake_voc):
    ds = make(fake_voc)
    bad = ds.root / ds.lists.images[0][0]
    bad.write_bytes(b"not an image at all")
    with pytest.raises(ValueError, match=str(bad)):
        ds[0]


def test_label_with_foreign_values_is_reported(fake_voc):
    ds = make(fake_voc)
    path = ds.root / ds.lists.images[0][1]
    lab = np.asarray(Image.open(path)).copy()
    lab[30:32, 0:3] = 37
    lab[35, 40] = 21
    Image.fromarray(lab, "L").save(path)
    with pytest.raises(ValueError, match=r"values \[21, 37\]") as err:
        ds[0]
    assert str(path) in str(err.value)


def test_too_few_images_for_k_shots(fake_voc):
    ds = make(fake_voc, shots=3)  # class 7 has 3 images: 2 besides the query
    with pytest.raises(ValueError, match=r"class 7 has 3 image\(s\).*2 besides the query"):
        ds.check_shots()
    with pytest.raises(ValueError, match="class 7"):
        for i in range(len(ds)):
            ds[i]  # some episode picks class 7 and must fail clearly, not loop forever
