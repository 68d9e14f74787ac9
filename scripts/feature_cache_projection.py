"""How much work ``msanet-eval --feature-cache`` can save on a benchmark fold, without a model.

Replays the protocol's image walk (seeds x episodes, the val list in order, cycled, each
episode's class and supports drawn as :class:`~msanet_lib.data.datasets.FewShotDataset` draws
them) through the real :class:`~msanet_lib.evaluation.feature_cache.FeatureCache`, with every
image counted as one unit of memory (every image has the same feature size at a fixed test
canvas), and prints the number of backbone encodings without the cache, the distinct images,
and the hits for cache sizes given in images.

Two sources of episodes:

- ``--data-root`` (and ``--benchmark``): the dataset on disk; the draws are exactly those of
  ``msanet-eval`` (batch size 1). The toy benchmark is there to check the replay against a
  measured run.
- ``--list-dir``: the authors' ``data_list_{fold}.txt`` and ``sub_class_file_list_{fold}.txt``
  (e.g. BAM's ``lists/pascal/fss_list/val``) when the images are not at hand. A query's classes
  are then taken from the sub-class lists (classes covering >= 2048 px), whereas the dataset
  draws among every novel class its label shows: an approximation.

Examples::

    python scripts/feature_cache_projection.py --data-root data/toy --fold 0 --seeds 510 365
    python scripts/feature_cache_projection.py --list-dir lists/pascal/fss_list/val --fold 0 \\
        --capacity 16 64 256 1024
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch

from msanet_lib.data.lists import EpisodeLists, read_authors_lists
from msanet_lib.evaluation.feature_cache import FeatureCache, FeatureKey, ImageFeatures
from msanet_lib.evaluation.protocol import EPISODES, SEEDS
from msanet_lib.runtime import run_command

Draw = Callable[[int, np.random.Generator], tuple[int, list[tuple[str, str]]]]
ONE_UNIT = ImageFeatures(layers=(torch.zeros(1, 1, 1, dtype=torch.uint8),), blocks=())


def lists_draw(lists: EpisodeLists, shots: int) -> Draw:
    """FewShotDataset.sample on the authors' lists, query classes from the sub-class lists."""
    classes_of: dict[tuple[str, str], list[int]] = {}
    for c in sorted(lists.class_files):
        for pair in lists.class_files[c]:
            classes_of.setdefault(tuple(pair), []).append(c)

    def draw(index: int, rng: np.random.Generator) -> tuple[int, list[tuple[str, str]]]:
        pair = tuple(lists.images[index % len(lists.images)])
        candidates = classes_of.get(pair)
        if not candidates:
            raise ValueError(f"query {pair[1]} is in no sub-class list")
        class_id = candidates[int(rng.integers(len(candidates)))]
        pool = [p for p in lists.class_files[class_id] if tuple(p) != pair]
        picks = rng.choice(len(pool), size=shots, replace=False)
        return class_id, [pool[i] for i in picks]

    return draw


def walk(draw: Draw, lists: EpisodeLists, seeds: Sequence[int], episodes: int
         ) -> Iterator[list[str]]:
    """The images (label names) of every episode, query first, in the protocol's order."""
    for seed in seeds:
        for index in range(episodes):
            rng = np.random.default_rng((seed, 0, index))  # FewShotDataset.episode_rng
            _, supports = draw(index, rng)
            query = lists.images[index % len(lists.images)]
            yield [query[1], *(p[1] for p in supports[::-1])]


def replay(episodes: list[list[str]], capacity: int) -> FeatureCache:
    """The LRU counters for a cache of ``capacity`` images (look-ups, then the new images)."""
    cache = FeatureCache(capacity)
    for names in episodes:
        keys = [FeatureKey(n, "", "") for n in names]
        missing = [k for k in keys if cache.get(k) is None]
        for k in missing:
            cache.put(k, ONE_UNIT)
    return cache


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="feature_cache_projection", description=__doc__.split("\n")[0])
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--data-root", type=Path, help="dataset folder (exact draws)")
    source.add_argument("--list-dir", type=Path, help="folder of the authors' val lists")
    p.add_argument("--benchmark", default="toy", choices=("toy", "pascal", "coco"))
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--shots", type=int, default=1)
    p.add_argument("--episodes", type=int, default=EPISODES)
    p.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    p.add_argument("--capacity", type=int, nargs="+", default=[16, 64, 256, 1024, 4096],
                   help="cache sizes, in images")
    args = p.parse_args(argv)

    def body() -> int:
        if args.data_root is not None:
            from msanet_lib.data.datasets import FewShotDataset

            ds = FewShotDataset(args.data_root, benchmark=args.benchmark, fold=args.fold,
                                split="val", shots=args.shots, progress=True)
            lists, draw = ds.lists, ds.sample
        else:
            d = args.list_dir
            lists = read_authors_lists(d / f"data_list_{args.fold}.txt",
                                       d / f"sub_class_file_list_{args.fold}.txt")
            draw = lists_draw(lists, args.shots)
        episodes = list(walk(draw, lists, args.seeds, args.episodes))
        encodings = sum(len(e) for e in episodes)
        distinct = len({n for e in episodes for n in e})
        print(f"{len(args.seeds)} seeds x {args.episodes} episodes, {args.shots}-shot: "
              f"{len(lists.images)} queries in the val list; {encodings} encodings without the "
              f"cache, {distinct} distinct images ({encodings / distinct:.2f} uses each)")
        print("| cache (images) | hits | misses = encodings | hit rate |\n|---:|---:|---:|---:|")
        for capacity in sorted(set(args.capacity)):
            s = replay(episodes, capacity).stats
            print(f"| {capacity} | {s.hits} | {s.misses} | {100 * s.hit_rate:.1f}% |")
        return 0

    return run_command("feature_cache_projection", body)


if __name__ == "__main__":
    sys.exit(main())
