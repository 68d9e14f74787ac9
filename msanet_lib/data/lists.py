"""Building and reading the image lists that episodes are drawn from.

Three kinds of file, all inside the dataset folder (``<dataset>/lists/``):

1. **Split lists** ``lists/{train,val}.txt``: every image of the split, one
   ``<image> <label>`` pair per line, paths relative to the dataset folder (the PFENet list
   format). For PASCAL, train is VOC2012 train + SBD ``train_noval`` without duplicates
   (5,953 images) and val is VOC2012 val (1,449): make them with
   :func:`write_split_list` (``msanet-data build-lists``). For COCO they default to every
   label map in ``annotations/{train2014,val2014}/``. The toy generator writes its own.
2. **Pixel statistics** ``lists/pixels_{split}.json``: for each image, how many pixels each
   class covers. Reading every label once is the slow part; the result is cached and reused
   for every fold and regime (the cache is keyed by the split list's content).
3. **Episode lists** ``lists/fss/{regime}/{split}/fold{k}_min{m}.json``: the query images
   of one fold and, per class, the images that may serve as its supports (our JSON format,
   :class:`EpisodeLists`). The authors' format (``data_list_{k}.txt`` +
   ``sub_class_file_list_{k}.txt``) is read by :func:`read_authors_lists` and written by
   :func:`write_authors_lists`.

Which images an episode list keeps (BAM ``make_dataset``; fss-field §2.3, §2.8):

- ``split="val"``: images where some novel class covers ``>= min_pixels``.
- ``split="train"``, ``regime="bam"`` (the default; BAM's ``filter_intersection=True``, the
  lists MSANet uses): images whose labelled classes are ALL base classes, with at least one
  covering ``>= min_pixels``. Images showing a novel class are dropped.
- ``split="train"``, ``regime="pfenet"``: images with a base class of ``>= min_pixels``,
  whatever else they show; novel pixels become background in the episode labels. This regime
  scores about 3 mIoU lower on PASCAL; every result should say which regime it used.

A class is listed as a support candidate of an image only if it covers ``>= min_pixels``.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tqdm import tqdm

from msanet_lib.data.io import read_label
from msanet_lib.data.list_files import (
    PIXELS_FORMAT,
    Pair,
    count_class_pixels,
    pairs_digest,
    parse_list_lines,
    write_pairs,
)
from msanet_lib.data.splits import IGNORE_LABEL, FoldSplit, benchmark_info, fold_split
from msanet_lib.data.toy import TOY_META, ensure_toy_benchmark
from msanet_lib.runtime import atomic_write_text
from msanet_lib.utils import data_root

REGIMES = ("bam", "pfenet")
SPLITS = ("train", "val")
EPISODE_LIST_FORMAT = "msanet-fss-list/1"


@dataclass
class EpisodeLists:
    """The images of one fold/split that episodes are drawn from.

    Attributes:
        images: query candidates, ``(image, label)`` paths relative to the dataset folder
            (or absolute), in file order; the val loader walks them in this order.
        class_files: class id -> the images in which that class covers ``>= min_pixels``
            (the support candidates of episodes of that class).
        regime: ``"bam"``, ``"pfenet"`` or ``"authors-file"`` (read from the authors' lists).
        min_pixels: area threshold used to build the lists (``None`` if unknown).
    """

    images: list[Pair]
    class_files: dict[int, list[Pair]]
    regime: str = "bam"
    min_pixels: int | None = None
    source: str = ""
    extra: dict = field(default_factory=dict)


# --------------------------------------------------------------------------------------------
# Dataset folders
# --------------------------------------------------------------------------------------------

def _missing_dataset(benchmark: str, looked: Sequence[Path]) -> FileNotFoundError:
    where = ", ".join(str(p) for p in looked)
    if benchmark == "toy":
        how = "generate it with `msanet-data generate toy`"
    else:
        how = (f"download it with `msanet-data download {benchmark} --root data/` "
               "(or pass root= the folder that holds it)")
    return FileNotFoundError(f"{benchmark} dataset not found: looked for {where}; {how}.")


def dataset_dir(benchmark: str, root: Path | str | None = None) -> Path:
    """The folder holding a benchmark's images and labels, checked to exist.

    ``root`` may be the dataset folder itself or the data root it was downloaded into:
    PASCAL is looked for in ``root``, ``root/VOCdevkit/VOC2012`` and
    ``root/VOCdevkit2012/VOC2012`` (must hold ``JPEGImages/`` and ``SegmentationClassAug/``);
    COCO in ``root`` and ``root/MSCOCO2014`` (``annotations/``); toy in ``root`` and
    ``root/toy``. Without ``root`` the data root (``$MSANET_DATA`` or ``data/``) is used.
    The toy benchmark is generated when it is missing (:func:`ensure_toy_benchmark`).

    Raises:
        FileNotFoundError: naming every folder looked at and the command that fetches it.
    """
    info = benchmark_info(benchmark)
    base = Path(root).expanduser() if root is not None else data_root()
    if info.name == "toy":
        if root is None:
            return ensure_toy_benchmark(base / "toy")
        if (base / TOY_META).is_file():
            return base
        # A data root (holding other things, or a toy/ subfolder) gets the toy in toy/.
        if (base / "toy").is_dir() or (base.is_dir() and any(base.iterdir())):
            base = base / "toy"
        return ensure_toy_benchmark(base)
    if info.name == "pascal":
        candidates = [base, base / "VOCdevkit" / "VOC2012", base / "VOCdevkit2012" / "VOC2012"]
        needed = ("JPEGImages", "SegmentationClassAug")
    else:
        candidates = [base, base / "MSCOCO2014"]
        needed = ("annotations",)
    for cand in candidates:
        if all((cand / sub).is_dir() for sub in needed):
            return cand
    return_paths = [c / needed[-1] for c in candidates]
    raise _missing_dataset(benchmark, return_paths)


# --------------------------------------------------------------------------------------------
# Split lists
# --------------------------------------------------------------------------------------------

def write_split_list(directory: Path, benchmark: str, split: str,
                     sources: Sequence[Path | str]) -> Path:
    """Merge list files into ``directory/lists/{split}.txt``, dropping duplicates.

    Args:
        directory: the dataset folder.
        benchmark: ``"pascal"``, ``"coco"`` or ``"toy"`` (decides how bare ids map to files).
        split: ``"train"`` or ``"val"``.
        sources: list files (ids or pairs), merged in order; the first occurrence of an
            image wins. For PASCAL train: VOC ``ImageSets/Segmentation/train.txt`` and SBD
            ``train_noval.txt``. The word ``"trainaug"`` stands for every
            ``SegmentationClassAug`` mask that is not in VOC val (10,582 images; a larger set
            than the authors' 5,953, say so when you use it).

    Returns:
        The written file.
    """
    directory = Path(directory)
    _check_split(split)
    pairs: list[Pair] = []
    for src in sources:
        if str(src) == "trainaug":
            val_ids = directory / "ImageSets" / "Segmentation" / "val.txt"
            if not val_ids.is_file():
                raise FileNotFoundError(f"'trainaug' needs the VOC val list {val_ids}.")
            val = {p[1] for p in parse_list_lines(val_ids.read_text().splitlines(), benchmark)}
            masks = sorted((directory / "SegmentationClassAug").glob("*.png"))
            pairs += [(f"JPEGImages/{m.stem}.jpg", f"SegmentationClassAug/{m.name}")
                      for m in masks if f"SegmentationClassAug/{m.name}" not in val]
            continue
        path = Path(src)
        if not path.is_absolute() and not path.is_file():
            path = directory / path
        if not path.is_file():
            raise FileNotFoundError(f"list file not found: {src} (also looked in {directory}).")
        pairs += parse_list_lines(path.read_text().splitlines(), benchmark, path)
    seen: set[str] = set()
    unique = []
    for pair in pairs:
        if pair[0] not in seen:
            seen.add(pair[0])
            unique.append(pair)
    out = directory / "lists" / f"{split}.txt"
    write_pairs(out, unique)
    return out


def split_list(directory: Path, benchmark: str, split: str) -> list[Pair]:
    """All ``(image, label)`` pairs of a split (``lists/{split}.txt``).

    COCO without a list file falls back to every PNG in ``annotations/{split}2014/``, sorted.

    Raises:
        FileNotFoundError: no list, with the command that makes one.
    """
    _check_split(split)
    directory = Path(directory)
    path = directory / "lists" / f"{split}.txt"
    if path.is_file():
        return parse_list_lines(path.read_text().splitlines(), benchmark, path)
    if benchmark == "coco":
        ann = directory / "annotations" / f"{split}2014"
        labels = sorted(ann.glob("*.png"))
        if labels:
            return [(f"{split}2014/{p.stem}.jpg", f"annotations/{split}2014/{p.name}")
                    for p in labels]
        raise FileNotFoundError(
            f"no COCO label maps in {ann} and no list {path}. Run "
            "`msanet-data download coco --root data/` (it writes the label maps)."
        )
    if benchmark == "pascal":
        how = ("`msanet-data build-lists --benchmark pascal --root <VOC2012 folder> "
               "--train-source ImageSets/Segmentation/train.txt --train-source "
               "<SBD train_noval.txt> --val-source ImageSets/Segmentation/val.txt`")
    else:
        how = "`msanet-data generate toy`"
    raise FileNotFoundError(f"split list {path} not found; make it with {how}.")


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise ValueError(f"split={split!r} must be 'train' or 'val'.")


# --------------------------------------------------------------------------------------------
# Per-image class pixel counts (cached)
# --------------------------------------------------------------------------------------------

def class_pixels(directory: Path, benchmark: str, split: str, *, rebuild: bool = False,
                 progress: bool = False) -> tuple[list[Pair], list[dict[int, int]]]:
    """Every image of a split and its per-class pixel counts, from the cache if it matches.

    Reads every label once (checking its values) and caches the result in
    ``lists/pixels_{split}.json``; the cache is rebuilt when the split list changes.

    Returns:
        ``(pairs, counts)`` with ``counts[i] = {class id: pixels}`` for ``pairs[i]``.
    """
    directory = Path(directory)
    info = benchmark_info(benchmark)
    pairs = split_list(directory, benchmark, split)
    digest = pairs_digest(pairs)
    cache = directory / "lists" / f"pixels_{split}.json"
    if cache.is_file() and not rebuild:
        try:
            data = json.loads(cache.read_text())
        except json.JSONDecodeError:
            data = {}
        if data.get("format") == PIXELS_FORMAT and data.get("digest") == digest:
            return pairs, [{int(k): v for k, v in d.items()} for d in data["pixels"]]
    counts = []
    for _, lbl in tqdm(pairs, desc=f"reading {split} labels", disable=not progress):
        counts.append(count_class_pixels(read_label(directory / lbl, info.num_classes),
                                         info.num_classes))
    payload = {"format": PIXELS_FORMAT, "benchmark": benchmark, "split": split,
               "digest": digest, "pixels": [{str(k): v for k, v in d.items()} for d in counts]}
    atomic_write_text(cache, json.dumps(payload, separators=(",", ":")))
    return pairs, counts


# --------------------------------------------------------------------------------------------
# Episode lists
# --------------------------------------------------------------------------------------------

def select_episode_images(pairs: Sequence[Pair], counts: Sequence[dict[int, int]],
                          split: FoldSplit, split_name: str, regime: str, min_pixels: int
                          ) -> EpisodeLists:
    """Apply the list rules of the module docstring to per-image pixel counts."""
    _check_split(split_name)
    if regime not in REGIMES:
        raise ValueError(f"regime={regime!r} must be one of {REGIMES}.")
    allowed = set(split.classes(split_name))
    images: list[Pair] = []
    class_files: dict[int, list[Pair]] = {c: [] for c in sorted(allowed)}
    for pair, count in zip(pairs, counts):
        if split_name == "train" and regime == "bam" and not set(count) <= allowed:
            continue  # shows a novel class: dropped (filter_intersection)
        eligible = [c for c, n in count.items() if c in allowed and n >= min_pixels]
        if eligible:
            images.append(pair)
            for c in eligible:
                class_files[c].append(pair)
    return EpisodeLists(images, class_files, regime, min_pixels)


def episode_list_path(directory: Path, split: str, fold: int, regime: str,
                      min_pixels: int) -> Path:
    """Where :func:`episode_lists` caches the lists of one fold."""
    return Path(directory) / "lists" / "fss" / regime / split / f"fold{fold}_min{min_pixels}.json"


def save_episode_lists(lists: EpisodeLists, path: Path, **meta: object) -> None:
    """Write ``lists`` in our JSON format (support lists as indices into ``images``)."""
    index = {pair: i for i, pair in enumerate(lists.images)}
    payload = {
        "format": EPISODE_LIST_FORMAT, **meta, "regime": lists.regime,
        "min_pixels": lists.min_pixels, "images": [list(p) for p in lists.images],
        "class_files": {str(c): [index[p] for p in files]
                        for c, files in lists.class_files.items()},
    }
    atomic_write_text(Path(path), json.dumps(payload, separators=(",", ":")))


def load_episode_lists(path: Path) -> EpisodeLists:
    """Read a file written by :func:`save_episode_lists`."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
        if data.get("format") != EPISODE_LIST_FORMAT:
            raise ValueError(f"format {data.get('format')!r}")
        images = [(str(a), str(b)) for a, b in data["images"]]
        class_files = {int(c): [images[i] for i in idx] for c, idx in data["class_files"].items()}
    except (OSError, ValueError, KeyError, TypeError, IndexError) as err:
        raise ValueError(f"cannot read episode list {path}: {err}. Delete it to rebuild.") from err
    return EpisodeLists(images, class_files, data["regime"], data.get("min_pixels"), str(path),
                        {k: v for k, v in data.items() if k not in ("images", "class_files")})


def episode_lists(directory: Path, benchmark: str, fold: int, split: str, *,
                  regime: str = "bam", min_pixels: int | None = None,
                  coco_split: str = "interleaved", rebuild: bool = False,
                  progress: bool = False) -> EpisodeLists:
    """The episode lists of one fold, built from the pixel statistics and cached.

    Args:
        directory: the dataset folder (:func:`dataset_dir`).
        benchmark, fold, split: as in :func:`~msanet_lib.data.splits.fold_split`.
        regime: ``"bam"`` (default) or ``"pfenet"``; see the module docstring. Val lists
            are the same under both.
        min_pixels: area threshold; default the benchmark's (2048, toy 128).
        rebuild: ignore the caches.
    """
    info = benchmark_info(benchmark)
    min_pixels = info.min_pixels if min_pixels is None else int(min_pixels)
    if regime not in REGIMES:
        raise ValueError(f"regime={regime!r} must be one of {REGIMES}.")
    fs = fold_split(benchmark, fold, coco_split)
    tag = f"{regime}-{coco_split}" if benchmark == "coco" and coco_split != "interleaved" else regime
    path = episode_list_path(directory, split, fold, tag, min_pixels)
    list_digest = pairs_digest(split_list(directory, benchmark, split))
    if path.is_file() and not rebuild:
        try:
            cached = load_episode_lists(path)
            if cached.extra.get("digest") == list_digest:
                return cached
        except ValueError:
            pass  # unreadable cache: rebuild it
    pairs, counts = class_pixels(directory, benchmark, split, rebuild=rebuild, progress=progress)
    lists = select_episode_images(pairs, counts, fs, split, regime, min_pixels)
    lists.source = str(path)
    save_episode_lists(lists, path, benchmark=benchmark, fold=fold, split=split,
                       base=list(fs.base), novel=list(fs.novel), digest=list_digest)
    return lists


# --------------------------------------------------------------------------------------------
# The authors' list format
# --------------------------------------------------------------------------------------------

_KNOWN_TOP_FOLDERS = ("JPEGImages", "SegmentationClassAug", "SegmentationClass", "train2014",
                      "val2014", "annotations")


def _reroot(path: str, directory: Path | None) -> str:
    """Map a path of the authors' lists (``../data/VOCdevkit2012/VOC2012/JPEGImages/x.jpg``)
    to one relative to our dataset folder by cutting before the first known folder name."""
    if directory is None:
        return path
    parts = path.replace("\\", "/").split("/")
    for i, part in enumerate(parts):
        if part in _KNOWN_TOP_FOLDERS:
            return "/".join(parts[i:])
    return path


def read_authors_lists(data_list: Path, sub_class_list: Path,
                       directory: Path | None = None) -> EpisodeLists:
    """Read BAM/MSANet ``data_list_{k}.txt`` and ``sub_class_file_list_{k}.txt``.

    ``data_list`` holds ``<image> <label>`` lines; ``sub_class_list`` a Python dict literal
    ``{class_id: [(image, label), ...]}``, parsed with :func:`ast.literal_eval` (the authors
    ``eval`` it, which would run any code in the file). With ``directory`` given, paths are
    re-rooted there (everything before ``JPEGImages/``, ``train2014/``, ... is dropped);
    otherwise they are kept verbatim, as the authors do.
    """
    data_list, sub_class_list = Path(data_list), Path(sub_class_list)
    for p in (data_list, sub_class_list):
        if not p.is_file():
            raise FileNotFoundError(f"authors' list file not found: {p}")
    images = [(_reroot(a, directory), _reroot(b, directory))
              for a, b in parse_list_lines(data_list.read_text().splitlines(), "pascal",
                                           data_list)]
    try:
        raw = ast.literal_eval(sub_class_list.read_text())
        if not isinstance(raw, dict):
            raise ValueError("not a dict literal")
        class_files = {int(c): [(_reroot(str(a), directory), _reroot(str(b), directory))
                                for a, b in files] for c, files in raw.items()}
    except (ValueError, SyntaxError, TypeError) as err:
        raise ValueError(
            f"cannot parse {sub_class_list}: {err}. Expected a Python dict literal "
            "{class_id: [(image, label), ...]} as in the BAM/MSANet fss_list files."
        ) from err
    return EpisodeLists(images, class_files, "authors-file", None, str(data_list))


def authors_list_dir(lists: str | Path, split: str, fold: int, name: str = "data.lists") -> Path:
    """``<lists>/<split>``, the folder of the authors' ``data_list_<fold>.txt`` and
    ``sub_class_file_list_<fold>.txt`` (their ``lists/<benchmark>/fss_list``).

    Raises:
        FileNotFoundError: either file is missing; the message names it and the layout.
    """
    folder = Path(lists).expanduser() / split
    for stem in ("data_list", "sub_class_file_list"):
        path = folder / f"{stem}_{fold}.txt"
        if not path.is_file():
            raise FileNotFoundError(
                f"{name} {lists}: {path} not found. Give the authors' fss_list folder, which "
                f"holds train/ and val/ with data_list_<fold>.txt and "
                f"sub_class_file_list_<fold>.txt (msanet_lib.data.lists.write_authors_lists "
                f"writes them), or {'leave it out' if name.startswith('--') else 'null'} to "
                "build the lists from the dataset.")
    return folder


def write_authors_lists(lists: EpisodeLists, folder: Path, fold: int) -> tuple[Path, Path]:
    """Write ``lists`` in the authors' format into ``folder`` (for running their code)."""
    folder = Path(folder)
    data = folder / f"data_list_{fold}.txt"
    sub = folder / f"sub_class_file_list_{fold}.txt"
    write_pairs(data, lists.images)
    atomic_write_text(sub, repr({c: list(files) for c, files in lists.class_files.items()}))
    return data, sub


__all__ = [
    "IGNORE_LABEL", "REGIMES", "EpisodeLists", "class_pixels", "count_class_pixels",
    "authors_list_dir", "dataset_dir", "episode_lists", "load_episode_lists", "parse_list_lines",
    "read_authors_lists", "save_episode_lists", "select_episode_images", "split_list",
    "write_authors_lists", "write_pairs", "write_split_list",
]
