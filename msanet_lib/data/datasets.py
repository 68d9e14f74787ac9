"""Episode datasets: :class:`FewShotDataset` (meta-training/testing) and
:class:`BaseClassDataset` (stage 1, the base learner).

An episode (msanet-spec §4-5, fss-field §2.3):

1. The query is ``lists.images[index]`` (the val split cycles through the list in file
   order when more episodes than images are asked for, as the authors' test loop).
2. The episode class is drawn uniformly from the query's classes that belong to the split
   (base classes when training, novel when testing), with no area filter here, as the
   authors (the list rules already guarantee one class of ``>= min_pixels``).
3. Query label: 1 where the label is that class, 0 elsewhere, 255 kept.
4. K DISTINCT supports are drawn from that class's support list, never the query itself.
   Their labels are binarised the same way.
5. The supports are stacked in the authors' reversed order: the first drawn support is the
   LAST row of ``support_imgs`` (the authors prepend each new shot). This only matters where
   the model treats shots unequally (MSANet's VGG 5-shot uses the last row alone, spec §1.5).
6. The base label maps a base class to its 1-based position in the base list, everything
   else to 0, keeping 255 (computed with a lookup table; the authors read pre-generated
   PNGs, which can still be used with ``base_data_root``).

Randomness. Each episode has its own generator, ``numpy.random.default_rng((seed, epoch,
index))``, used for the class, the supports and every augmentation. An episode is therefore
the same whatever the number of DataLoader workers and whichever worker builds it. This
deliberately differs from the authors, whose episodes come from the global ``random`` module
seeded per worker (same seed + different ``workers`` = different episodes). Call
:meth:`FewShotDataset.set_epoch` to draw new training episodes each epoch.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from msanet_lib.data.io import read_image, read_label
from msanet_lib.data.lists import (
    EpisodeLists,
    dataset_dir,
    episode_lists,
    read_authors_lists,
    split_list,
)
from msanet_lib.data.splits import IGNORE_LABEL, benchmark_info, fold_split
from msanet_lib.data.transforms import nearest_resize, test_transform, train_transform

Transform = Callable[..., tuple[Tensor, Tensor]]

# Keys whose tensors differ in size between items; collate_episodes keeps them as lists.
RAW_KEYS = ("query_raw_label", "query_raw_base_label", "raw_label")


def binary_label(label: np.ndarray, class_id: int) -> np.ndarray:
    """``(H, W) uint8``: 1 where ``label == class_id``, 255 where ignored, 0 elsewhere."""
    out = (label == class_id).astype(np.uint8)
    out[label == IGNORE_LABEL] = IGNORE_LABEL
    return out


def collate_episodes(items: Sequence[dict]) -> dict:
    """Batch episode (or base-class) dicts for a DataLoader (``collate_fn=``).

    Tensors are stacked (``query_img`` -> ``(B, 3, H, W)``, ``support_imgs`` ->
    ``(B, K, 3, H, W)``, ...), ints become ``(B,)`` int64 tensors, the original-resolution
    labels (:data:`RAW_KEYS`, sizes differ) and strings stay lists.
    """
    if not items:
        raise ValueError("collate_episodes needs at least one item.")
    out: dict = {}
    for key in items[0]:
        values = [it[key] for it in items]
        if key in RAW_KEYS or not isinstance(values[0], (Tensor, int, np.integer)):
            out[key] = values
        elif isinstance(values[0], Tensor):
            out[key] = torch.stack(values)
        else:
            out[key] = torch.as_tensor(values, dtype=torch.int64)
    return out


class _LabelledImages:
    """Shared reading and base-label logic of both datasets."""

    def _setup(self, root: Path | str | None, benchmark: str, fold: int,
               base_data_root: Path | str | None, coco_split: str) -> None:
        self.info = benchmark_info(benchmark)
        self.benchmark = benchmark
        self.fold = fold
        self.split_classes = fold_split(benchmark, fold, coco_split)
        self.root = dataset_dir(benchmark, root)
        self.base_lookup = self.split_classes.base_lookup()
        self.base_data_root = Path(base_data_root) if base_data_root is not None else None

    def _path(self, rel: str) -> Path:
        p = Path(rel)
        return p if p.is_absolute() else self.root / p

    def _read_pair(self, pair: tuple[str, str]) -> tuple[np.ndarray, np.ndarray]:
        img_path, lbl_path = self._path(pair[0]), self._path(pair[1])
        image = read_image(img_path)
        label = read_label(lbl_path, self.info.num_classes)
        if image.shape[:2] != label.shape:
            raise ValueError(
                f"image {img_path} is {image.shape[1]}x{image.shape[0]} but its label "
                f"{lbl_path} is {label.shape[1]}x{label.shape[0]}; they must match."
            )
        return image, label

    def _base_label(self, label: np.ndarray, label_rel: str, split: str) -> np.ndarray:
        """Base-learner label of ``label``: from ``base_data_root`` if given, else remapped."""
        if self.base_data_root is None:
            return self.base_lookup[label]
        path = self.base_data_root / split / str(self.fold) / Path(label_rel).name
        base = read_label(path, len(self.split_classes.base))
        if base.shape != label.shape:
            raise ValueError(f"base label {path} is {base.shape}, its label is {label.shape}.")
        return base


class FewShotDataset(_LabelledImages, Dataset):
    """Few-shot segmentation episodes of one benchmark fold.

    Args:
        root: dataset folder or data root (see :func:`~msanet_lib.data.lists.dataset_dir`);
            ``None`` = the data root. The toy benchmark is generated if missing.
        benchmark: ``"toy"``, ``"pascal"`` or ``"coco"``.
        fold: 0..3.
        split: ``"train"`` (episodes of base classes, augmented) or ``"val"`` (novel classes,
            test-time resize, plus the original-resolution label).
        shots: K, the number of support images.
        transform: ``t(image, labels, rng) -> (image, labels)`` applied to the query (binary
            label + base label jointly) and to each support independently. Default: the
            authors' augmentation for train, :class:`~msanet_lib.data.transforms.TestResize`
            for val, at ``image_size``.
        image_size: crop / canvas size of the default transform (benchmark default: 473
            PASCAL, 641 COCO, 128 toy).
        seed: seed of the episode generators (see the module docstring).
        episodes: length of the dataset; default the number of query images. Larger values
            cycle through the queries (each pass draws new classes and supports).
        regime: ``"bam"`` or ``"pfenet"`` training lists (:mod:`~msanet_lib.data.lists`).
        min_pixels: area threshold of the lists (benchmark default).
        list_dir: read the authors' ``data_list_{fold}.txt`` / ``sub_class_file_list_{fold}.txt``
            from this folder instead of building lists (e.g. ``lists/pascal/fss_list/val``).
        base_data_root: folder of the authors' pre-generated base annotations
            (``<base_data_root>/{train,val}/{fold}/<label name>``); default: computed.
        coco_split: ``"interleaved"`` (default) or ``"contiguous"`` COCO folds.
        score_size: ``None`` (default, the authors): the val items' ``query_raw_label`` and
            ``query_raw_base_label`` are at the original resolution; ``N``: nearest-resized to
            ``N x N`` (HSNet, which scores at 400 x 400 against such a label).

    Items are dicts (``docs/ARCHITECTURE.md``): ``query_img (3, S, S)`` float,
    ``query_mask (S, S)`` int64 0/1/255, ``support_imgs (K, 3, S, S)``,
    ``support_masks (K, S, S)``, ``query_base_label (S, S)`` int64, ``class_id`` (dataset id),
    ``class_index`` (position in the fold's base list when training, novel list when
    testing), ``query_name``/``support_names`` (label paths, supports in stacked order) and,
    for val, ``query_raw_label (h0, w0)`` int64, the binary label at original resolution, and
    ``query_raw_base_label (h0, w0)``, the base-class label at original resolution.
    """

    def __init__(self, root: Path | str | None = None, benchmark: str = "toy", fold: int = 0,
                 split: str = "train", shots: int = 1, *, transform: Transform | None = None,
                 image_size: int | None = None, seed: int = 0, episodes: int | None = None,
                 regime: str = "bam", min_pixels: int | None = None,
                 list_dir: Path | str | None = None, base_data_root: Path | str | None = None,
                 coco_split: str = "interleaved", progress: bool = False,
                 score_size: int | None = None):
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'.")
        if score_size is not None and score_size < 1:
            raise ValueError(f"score_size={score_size} must be >= 1, or None for the original "
                             "resolution.")
        self.score_size = score_size
        if not isinstance(shots, (int, np.integer)) or shots < 1:
            raise ValueError(f"shots={shots!r} must be a positive integer.")
        self._setup(root, benchmark, fold, base_data_root, coco_split)
        self.split, self.shots, self.seed, self.epoch = split, int(shots), int(seed), 0
        self.regime = regime
        self.classes = self.split_classes.classes(split)
        if list_dir is not None:
            d = Path(list_dir)
            self.lists: EpisodeLists = read_authors_lists(
                d / f"data_list_{fold}.txt", d / f"sub_class_file_list_{fold}.txt", self.root)
        else:
            self.lists = episode_lists(self.root, benchmark, fold, split, regime=regime,
                                       min_pixels=min_pixels, coco_split=coco_split,
                                       progress=progress)
        if not self.lists.images:
            raise ValueError(
                f"{benchmark} fold {fold} {split}: no image qualifies as a query (lists: "
                f"{self.lists.source}). Check the dataset folder {self.root} and min_pixels."
            )
        self.episodes = len(self.lists.images) if episodes is None else int(episodes)
        size = image_size or self.info.image_size
        self.image_size = size  # of the default transform; a custom one decides its own
        if transform is None:
            transform = (train_transform(size, self.info.scale_range) if split == "train"
                         else test_transform(size))
        self.transform = transform
        self._set_of_classes = set(self.classes)

    def __len__(self) -> int:
        return self.episodes

    def set_epoch(self, epoch: int) -> None:
        """Draw a new set of episodes (training): generators become ``(seed, epoch, index)``."""
        self.epoch = int(epoch)

    def episode_rng(self, index: int) -> np.random.Generator:
        """The generator of episode ``index`` (independent of workers and call order)."""
        return np.random.default_rng((self.seed, self.epoch, int(index)))

    def check_shots(self) -> None:
        """Raise ``ValueError`` if some class has too few images for K distinct supports
        besides the query; call it up front to fail before training starts."""
        for c in self.classes:
            n = len(self.lists.class_files.get(c, []))
            if 0 < n < self.shots + 1:
                raise self._too_few(c, n, n - 1)

    def _too_few(self, class_id: int, listed: int, usable: int) -> ValueError:
        return ValueError(
            f"class {class_id} has {listed} image(s) in its support list, {usable} besides the "
            f"query ({self.benchmark} fold {self.fold} {self.split}); a {self.shots}-shot "
            f"episode needs {self.shots} distinct support(s) other than the query, i.e. at "
            f"least {self.shots + 1} images. Use fewer shots or a lower min_pixels."
        )

    def sample(self, index: int, rng: np.random.Generator) -> tuple[int, list[tuple[str, str]]]:
        """Episode class and supports (in drawn order) for query ``index``; reads the label."""
        pair = self.lists.images[index % len(self.lists.images)]
        label = read_label(self._path(pair[1]), self.info.num_classes)
        present = np.flatnonzero(np.bincount(label.ravel(), minlength=256)[1:IGNORE_LABEL]) + 1
        candidates = [int(c) for c in present if int(c) in self._set_of_classes]
        if not candidates:
            raise ValueError(
                f"query {pair[1]} shows none of the {self.split} classes {list(self.classes)}; "
                f"the list {self.lists.source} does not match the labels. Rebuild it with "
                "`msanet-data build-lists`."
            )
        class_id = candidates[int(rng.integers(len(candidates)))]
        listed = self.lists.class_files.get(class_id, [])
        pool = [p for p in listed if p != pair]
        if len(pool) < self.shots:
            raise self._too_few(class_id, len(listed), len(pool))
        picks = rng.choice(len(pool), size=self.shots, replace=False)
        return class_id, [pool[i] for i in picks]

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"episode {index} out of range ({len(self)} episodes).")
        index %= len(self)
        rng = self.episode_rng(index)
        class_id, supports = self.sample(index, rng)
        pair = self.lists.images[index % len(self.lists.images)]
        image, label = self._read_pair(pair)
        q_mask = binary_label(label, class_id)
        q_base = self._base_label(label, pair[1], self.split)
        q_img, q_labels = self.transform(image, np.stack([q_mask, q_base]), rng)
        s_imgs, s_masks = [], []
        for s_pair in supports:
            s_image, s_label = self._read_pair(s_pair)
            img, lab = self.transform(s_image, binary_label(s_label, class_id)[None], rng)
            s_imgs.append(img)
            s_masks.append(lab[0])
        item = {
            "query_img": q_img,
            "query_mask": q_labels[0],
            # Reversed: the first drawn support ends up last, as the authors stack them.
            "support_imgs": torch.stack(s_imgs[::-1]),
            "support_masks": torch.stack(s_masks[::-1]),
            "query_base_label": q_labels[1],
            "class_id": class_id,
            "class_index": self.classes.index(class_id),
            "query_name": pair[1],
            "support_names": [p[1] for p in supports[::-1]],
        }
        if self.split == "val":
            raw = torch.from_numpy(np.stack([q_mask, q_base]).astype(np.int64))  # (2, h0, w0)
            if self.score_size is not None:  # HSNet: the label nearest-resized to N x N
                raw = nearest_resize(raw, self.score_size)
            item["query_raw_label"] = raw[0]
            # the base learner is scored at the same size, as the authors' test.py
            item["query_raw_base_label"] = raw[1]
        return item


class BaseClassDataset(_LabelledImages, Dataset):
    """Images with base-class labels for stage 1 (the PSPNet base learner, BAM
    ``train_base.py``).

    Labels: a base class becomes its 1-based position in the fold's base list, background
    and novel classes 0, 255 kept (``num_base + 1`` outputs: 16 PASCAL, 61 COCO).

    Args:
        root, benchmark, fold, base_data_root, coco_split: as :class:`FewShotDataset`.
        split: ``"train"`` or ``"val"``.
        images: ``"all"`` (default, as BAM: every image of the split list, novel pixels become
            background) or ``"episodes"`` (only the training episode list of ``regime``; with
            the BAM list these images show no novel class at all).
        transform: ``t(image, labels, rng)``; default the training augmentation (train) or
            the test resize (val) at ``image_size``, with ``scale`` for train.
        seed: per-item generators ``(seed, epoch, index)`` as in :class:`FewShotDataset`.

    Items: ``image (3, S, S)``, ``label (S, S)`` int64 and, for val, ``raw_label (h0, w0)``
    (base label at original resolution), plus ``name`` (label path).
    """

    def __init__(self, root: Path | str | None = None, benchmark: str = "toy", fold: int = 0,
                 split: str = "train", *, transform: Transform | None = None,
                 image_size: int | None = None, scale: tuple[float, float] | None = None,
                 seed: int = 0, images: str = "all", regime: str = "bam",
                 min_pixels: int | None = None, base_data_root: Path | str | None = None,
                 coco_split: str = "interleaved", progress: bool = False):
        if split not in ("train", "val"):
            raise ValueError(f"split={split!r} must be 'train' or 'val'.")
        self._setup(root, benchmark, fold, base_data_root, coco_split)
        self.split, self.seed, self.epoch = split, int(seed), 0
        if images == "all":
            self.pairs = split_list(self.root, benchmark, split)
        elif images == "episodes":
            self.pairs = episode_lists(self.root, benchmark, fold, split, regime=regime,
                                       min_pixels=min_pixels, coco_split=coco_split,
                                       progress=progress).images
        else:
            raise ValueError(f"images={images!r} must be 'all' or 'episodes'.")
        if not self.pairs:
            raise ValueError(f"{benchmark} {split}: the image list of {self.root} is empty.")
        size = image_size or self.info.image_size
        if transform is None:
            transform = (train_transform(size, scale or self.info.scale_range)
                         if split == "train" else test_transform(size))
        self.transform = transform

    def __len__(self) -> int:
        return len(self.pairs)

    def set_epoch(self, epoch: int) -> None:
        """New augmentations each epoch."""
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        pair = self.pairs[index]
        image, label = self._read_pair(pair)
        base = self._base_label(label, pair[1], self.split)
        img, lab = self.transform(image, base[None], rng)
        item = {"image": img, "label": lab[0], "name": pair[1]}
        if self.split == "val":
            item["raw_label"] = torch.from_numpy(base.astype(np.int64))
        return item


__all__ = ["BaseClassDataset", "FewShotDataset", "binary_label", "collate_episodes"]
