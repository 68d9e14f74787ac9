"""msanet_lib.data: benchmarks, fold splits, list building, transforms and episodes.

- :mod:`~msanet_lib.data.splits`: base/novel classes of each fold.
- :mod:`~msanet_lib.data.lists`: which images serve as queries and supports (and caches).
- :mod:`~msanet_lib.data.transforms`: the authors' augmentation and test resize, in torch.
- :mod:`~msanet_lib.data.datasets`: :class:`FewShotDataset` episodes, :class:`BaseClassDataset`.
- :mod:`~msanet_lib.data.toy`: the offline toy benchmark (generated on first use).
- ``download`` / ``coco_masks``: fetching PASCAL and COCO and making COCO label maps.
"""

from msanet_lib.data.datasets import (
    BaseClassDataset,
    FewShotDataset,
    binary_label,
    collate_episodes,
)
from msanet_lib.data.lists import EpisodeLists, dataset_dir, episode_lists, read_authors_lists
from msanet_lib.data.splits import BENCHMARKS, FoldSplit, benchmark_info, fold_split
from msanet_lib.data.toy import ensure_toy_benchmark, toy_classes
from msanet_lib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    denormalize,
    test_transform,
    train_transform,
)

__all__ = [
    "BENCHMARKS", "IMAGENET_MEAN", "IMAGENET_STD", "BaseClassDataset", "EpisodeLists",
    "FewShotDataset", "FoldSplit", "benchmark_info", "binary_label", "collate_episodes",
    "dataset_dir", "denormalize", "ensure_toy_benchmark", "episode_lists", "fold_split",
    "read_authors_lists", "test_transform", "toy_classes", "train_transform",
]
