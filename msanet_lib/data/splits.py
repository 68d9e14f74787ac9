"""Fold splits of the three benchmarks: which classes are base (training) and novel (testing).

Class ids are the dataset's own 1-based ids (0 = background, 255 = ignore).

- **PASCAL-5i** (20 VOC classes): fold ``i`` is novel for ``5i+1 .. 5i+5``; the base list is
  the other 15 in ascending order (msanet-spec §4, fss-field §2.1).
- **COCO-20i**, interleaved split ("SPLIT COCO"/FWB, used by every MSANet COCO config): fold
  ``i`` is novel for the ids ``c`` in 1..80 with ``(c - 1) mod 4 == i``, i.e.
  ``{i+1, i+5, ..., i+77}``; the base list is the other 60 ascending. The older contiguous
  PANet split (``20i+1 .. 20i+20``) is available with ``coco_split="contiguous"``.
- **toy** (20 procedurally generated classes, :mod:`msanet_lib.data.toy`): 4 folds exactly
  as PASCAL.

The order of the base list matters: the base learner's output channel ``j`` (1-based) is
``base[j - 1]`` and the episode's ``class_index`` is a position in these tuples.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from msanet_lib.runtime import IGNORE_LABEL

NUM_FOLDS = 4
BENCHMARK_NAMES = ("toy", "pascal", "coco")


@dataclass(frozen=True)
class BenchmarkInfo:
    """Facts about a benchmark that the loaders need.

    Attributes:
        name: ``"toy"``, ``"pascal"`` or ``"coco"``.
        num_classes: number of foreground classes (ids ``1..num_classes``).
        image_size: square training crop and evaluation canvas used by the authors.
        scale_range: RandScale range of the meta-training augmentation (spec §3).
        min_pixels: a class counts in an image's lists only if it covers at least this many
            pixels at original resolution. ``2 * 32 * 32 = 2048`` for the real benchmarks (the
            OSLSM rule); the toy images are about 30x smaller, so the threshold is scaled.
    """

    name: str
    num_classes: int
    image_size: int
    scale_range: tuple[float, float]
    min_pixels: int


BENCHMARKS: dict[str, BenchmarkInfo] = {
    "pascal": BenchmarkInfo("pascal", 20, 473, (0.9, 1.1), 2 * 32 * 32),
    "coco": BenchmarkInfo("coco", 80, 641, (0.8, 1.25), 2 * 32 * 32),
    "toy": BenchmarkInfo("toy", 20, 128, (0.9, 1.1), 2 * 8 * 8),
}


def benchmark_info(benchmark: str) -> BenchmarkInfo:
    """The :class:`BenchmarkInfo` of ``benchmark``; a clear error for an unknown name."""
    try:
        return BENCHMARKS[benchmark]
    except KeyError:
        raise ValueError(
            f"benchmark={benchmark!r} is unknown; choose one of {', '.join(BENCHMARK_NAMES)}."
        ) from None


@dataclass(frozen=True)
class FoldSplit:
    """Base and novel classes of one fold.

    Attributes:
        benchmark: benchmark name.
        fold: fold index 0..3.
        base: base (training) class ids, ascending.
        novel: novel (test) class ids, ascending.
        num_classes: all foreground classes of the benchmark.
    """

    benchmark: str
    fold: int
    base: tuple[int, ...]
    novel: tuple[int, ...]
    num_classes: int

    def base_lookup(self) -> np.ndarray:
        """Lookup table ``(256,) uint8`` from a dataset label to the base-learner label.

        A base class maps to its position in :attr:`base` + 1 (1..15 PASCAL, 1..60 COCO),
        background and novel classes map to 0 and 255 stays 255 (the authors'
        ``get_mulway_base_data.py``). Apply it as ``table[label]``.
        """
        table = np.zeros(256, dtype=np.uint8)
        table[np.asarray(self.base, dtype=np.int64)] = np.arange(1, len(self.base) + 1)
        table[IGNORE_LABEL] = IGNORE_LABEL
        return table

    def classes(self, split: str) -> tuple[int, ...]:
        """The classes episodes are drawn from: base for ``"train"``, novel for ``"val"``."""
        if split == "train":
            return self.base
        if split == "val":
            return self.novel
        raise ValueError(f"split={split!r} must be 'train' or 'val'.")


def fold_split(benchmark: str, fold: int, coco_split: str = "interleaved") -> FoldSplit:
    """Base/novel classes of ``fold`` for ``benchmark`` (see the module docstring).

    Args:
        benchmark: ``"toy"``, ``"pascal"`` or ``"coco"``.
        fold: 0..3.
        coco_split: ``"interleaved"`` (MSANet/BAM/PFENet, the default) or ``"contiguous"``
            (PANet). Ignored for the other benchmarks.
    """
    info = benchmark_info(benchmark)
    if not isinstance(fold, (int, np.integer)) or not 0 <= fold < NUM_FOLDS:
        raise ValueError(f"fold={fold!r} must be an integer in 0..{NUM_FOLDS - 1}.")
    fold = int(fold)
    all_ids = range(1, info.num_classes + 1)
    if benchmark == "coco" and coco_split == "interleaved":
        novel = [c for c in all_ids if (c - 1) % NUM_FOLDS == fold]
    elif benchmark == "coco" and coco_split != "contiguous":
        raise ValueError(f"coco_split={coco_split!r} must be 'interleaved' or 'contiguous'.")
    else:
        per_fold = info.num_classes // NUM_FOLDS
        novel = list(range(per_fold * fold + 1, per_fold * (fold + 1) + 1))
    base = [c for c in all_ids if c not in set(novel)]
    return FoldSplit(benchmark, fold, tuple(base), tuple(novel), info.num_classes)
