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
from msanet_lib.data.transforms import test_transform, train_transform
from msanet_lib.training.config import TrainConfig


def ensure_data(cfg: TrainConfig) -> Path:
    """The benchmark folder; the toy benchmark is generated when missing (offline, seconds).

    Raises:
        FileNotFoundError: a real benchmark (PASCAL, COCO) is not installed; the message
            says how to get it (``msanet-data download``).
    """
    from msanet_lib.data.lists import dataset_dir

    return dataset_dir(cfg.benchmark, cfg.data_root)


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
                            seed=cfg.seed, coco_split=_coco_split(cfg))
    if max_images is not None and max_images < len(data):
        return Subset(data, range(max_images))
    return data


def episode_dataset(cfg: TrainConfig, split: str, image_size: int,
                    scale: tuple[float, float] | None = None,
                    rotate: tuple[float, float] | None = None) -> FewShotDataset:
    """Stage-2 episodes: ``train`` = base classes (augmented), ``val`` = the fold's novel
    classes (one episode per query image; the evaluation sets its own count)."""
    data = FewShotDataset(cfg.data_root, benchmark=cfg.benchmark, fold=cfg.fold, split=split,
                          shots=cfg.shots, transform=_transform(split, image_size, scale, rotate),
                          seed=cfg.seed, coco_split=_coco_split(cfg))
    data.check_shots()
    return data
