"""The datasets of a training config (thin glue over :mod:`msanet_lib.data`).

Stage 1 reads :class:`~msanet_lib.data.datasets.BaseClassDataset` (every image of the split,
novel pixels as background, as BAM's ``BaseData``); stage 2 reads
:class:`~msanet_lib.data.datasets.FewShotDataset` (base-class episodes for training, novel-class
episodes of the test fold for validation). Augmentation numbers come from the config section.
"""

from __future__ import annotations

from pathlib import Path

from torch.utils.data import Dataset, Subset

from msanet_lib.data.datasets import BaseClassDataset, FewShotDataset
from msanet_lib.data.lists import authors_list_dir, dataset_dir
from msanet_lib.data.transforms import test_transform, train_transform
from msanet_lib.training.config import TrainConfig


def ensure_data(cfg: TrainConfig) -> Path:
    """The benchmark folder; the toy benchmark is generated when missing (offline, seconds).

    Also checks the ``data:`` section's folders now, so that a wrong path stops the command
    before stage 1 trains rather than when stage 2 builds its episodes hours later.

    Raises:
        FileNotFoundError: a real benchmark (PASCAL, COCO) is not installed; the message
            says how to get it (``msanet-data download``); or ``data.lists`` /
            ``data.base_annotations`` lack this fold's files.
    """
    directory = dataset_dir(cfg.benchmark, cfg.data_root)
    if cfg.data.lists is not None:
        for split in ("train", "val"):
            authors_list_dir(cfg.data.lists, split, cfg.fold, "data.lists")
    base_annotations(cfg)  # raises if the folder lacks this fold
    return directory


def base_annotations(cfg: TrainConfig) -> Path | None:
    """The folder of pre-generated base labels, or None to remap them from the labels.

    Raises:
        FileNotFoundError: the folder has no ``{train,val}/<fold>/`` subfolder.
    """
    if cfg.data.base_annotations == "on_the_fly":
        return None
    root = Path(cfg.data.base_annotations).expanduser()
    for split in ("train", "val"):
        if not (root / split / str(cfg.fold)).is_dir():
            raise FileNotFoundError(
                f"data.base_annotations {root}: no folder {root / split / str(cfg.fold)}. Give "
                "the authors' base_annotation/<benchmark> folder (train/<fold>/ and "
                "val/<fold>/ of PNGs named as the labels), or on_the_fly.")
    return root


def lists_note(cfg: TrainConfig) -> str:
    """What the run header says about the episode lists (every result should name them)."""
    if cfg.data.lists is None:
        return f"{cfg.data.regime} regime (built from the dataset)"
    return f"the files in {cfg.data.lists} (read as given; data.regime={cfg.data.regime})"


def base_labels_note(cfg: TrainConfig) -> str:
    """What the run header says about the base labels."""
    if cfg.data.base_annotations == "on_the_fly":
        return "remapped from the labels"
    return f"read from {cfg.data.base_annotations}"


def _transform(split: str, image_size: int, scale: tuple[float, float] | None,
               rotate: tuple[float, float] | None):  # noqa: ANN202 (a Compose of transforms)
    if split == "val":
        return test_transform(image_size)
    return train_transform(image_size, scale or (0.9, 1.1), rotate or (-10.0, 10.0))


def _coco_split(cfg: TrainConfig) -> str:
    return "interleaved" if cfg.use_split_coco else "contiguous"


def base_class_dataset(cfg: TrainConfig, split: str, image_size: int,
                       scale: tuple[float, float] | None = None,
                       rotate: tuple[float, float] | None = None,
                       max_images: int | None = None) -> Dataset:
    """Stage-1 images with base labels (items ``image``, ``label`` ...); optionally the first
    ``max_images`` only (quick validation)."""
    data = BaseClassDataset(cfg.data_root, benchmark=cfg.benchmark, fold=cfg.fold, split=split,
                            transform=_transform(split, image_size, scale, rotate),
                            seed=cfg.seed, coco_split=_coco_split(cfg),
                            base_data_root=base_annotations(cfg))
    if max_images is not None and max_images < len(data):
        return Subset(data, range(max_images))
    return data


def episode_dataset(cfg: TrainConfig, split: str, image_size: int,
                    scale: tuple[float, float] | None = None,
                    rotate: tuple[float, float] | None = None) -> FewShotDataset:
    """Stage-2 episodes: ``train`` = base classes (augmented), ``val`` = the fold's novel
    classes (one episode per query image; the evaluation sets its own count).

    The lists are the ``data.regime`` lists built from the dataset, or the authors' files of
    ``data.lists`` read as they are; base labels follow ``data.base_annotations``.
    """
    lists = (authors_list_dir(cfg.data.lists, split, cfg.fold)
             if cfg.data.lists is not None else None)
    data = FewShotDataset(cfg.data_root, benchmark=cfg.benchmark, fold=cfg.fold, split=split,
                          shots=cfg.shots, transform=_transform(split, image_size, scale, rotate),
                          seed=cfg.seed, coco_split=_coco_split(cfg), regime=cfg.data.regime,
                          list_dir=lists, base_data_root=base_annotations(cfg))
    data.check_shots()
    return data
