"""The ``msanet-data`` command.

    msanet-data generate toy [--root DIR] [--seed N] [--force]
    msanet-data download {pascal,coco} [--root data/] [--base-url URL]
    msanet-data build-lists --benchmark pascal --root DIR [--train-source FILE ...]
                            [--val-source FILE ...] [--regime bam|pfenet|both]
    msanet-data show [--benchmark toy] [--fold 0] [--shots 1] [--split val] [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from msanet_lib.data.splits import BENCHMARK_NAMES, NUM_FOLDS
from msanet_lib.runtime import run_command


def _cmd_generate(args: argparse.Namespace) -> int:
    from msanet_lib.data.toy import ensure_toy_benchmark, read_toy_meta

    start = time.perf_counter()
    root = ensure_toy_benchmark(args.root, seed=args.seed, force=args.force)
    meta = read_toy_meta(root) or {}
    print(f"toy benchmark in {root}: {meta.get('sizes')} images, seed {meta.get('seed')} "
          f"({time.perf_counter() - start:.1f} s)")
    return 0


def _cmd_download(args: argparse.Namespace) -> int:
    # Imported here: downloading is optional and its module is only needed now.
    from msanet_lib.data.download import ChecksumError, DownloadError, download
    from msanet_lib.utils import data_root

    root = Path(args.root) if args.root else data_root()
    try:
        path = download(args.dataset, root, args.base_url, segmentation_aug=args.segmentation_aug)
    except (DownloadError, ChecksumError) as err:
        # The messages already say what was kept and how to resume; a traceback adds nothing.
        print(f"msanet-data download: {err}", file=sys.stderr)
        return 1
    print(f"{args.dataset} ready in {path}. Next: msanet-data build-lists --benchmark "
          f"{args.dataset} --root {path}")
    return 0


def _cmd_build_lists(args: argparse.Namespace) -> int:
    from msanet_lib.data.lists import (
        class_pixels,
        dataset_dir,
        episode_lists,
        write_split_list,
    )

    directory = dataset_dir(args.benchmark, args.root)
    for split, sources in (("train", args.train_source), ("val", args.val_source)):
        if sources:
            print(f"wrote {write_split_list(directory, args.benchmark, split, sources)}")
    regimes = ("bam", "pfenet") if args.regime == "both" else (args.regime,)
    for split in ("train", "val"):
        pairs, _ = class_pixels(directory, args.benchmark, split, rebuild=args.force,
                                progress=True)
        for fold in range(NUM_FOLDS):
            for regime in regimes if split == "train" else regimes[:1]:
                lists = episode_lists(directory, args.benchmark, fold, split, regime=regime,
                                      min_pixels=args.min_pixels, rebuild=args.force)
                sizes = [len(v) for v in lists.class_files.values()]
                print(f"{split} fold {fold} {regime:6s}: {len(lists.images):6d} of {len(pairs)} "
                      f"images; support lists {min(sizes)}..{max(sizes)} per class "
                      f"-> {lists.source}")
    return 0


def _cmd_show(args: argparse.Namespace) -> int:
    from msanet_lib.data.datasets import FewShotDataset
    from msanet_lib.viz.episodes import save_episodes

    ds = FewShotDataset(args.root, args.benchmark, args.fold, args.split, args.shots,
                        seed=args.seed, regime=args.regime)
    names = None
    if args.benchmark == "toy":
        from msanet_lib.data.toy import toy_classes

        names = {c.id: c.name for c in toy_classes()}
    step = max(1, len(ds) // args.count)
    episodes = [ds[i * step] for i in range(min(args.count, len(ds)))]
    out = save_episodes(episodes, args.out, names)
    print(f"wrote {out} ({len(episodes)} {args.shots}-shot episodes, {args.benchmark} fold "
          f"{args.fold} {args.split})")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msanet-data", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    sub = p.add_subparsers(dest="command", required=True)

    g = sub.add_parser("generate", help="generate the offline toy benchmark")
    g.add_argument("what", choices=["toy"])
    g.add_argument("--root", type=Path, default=None, help="default: <data root>/toy")
    g.add_argument("--seed", type=int, default=None)
    g.add_argument("--force", action="store_true", help="regenerate (replaces it when done)")
    g.set_defaults(func=_cmd_generate)

    d = sub.add_parser("download", help="download PASCAL VOC + SBD masks or COCO 2014")
    d.add_argument("dataset", choices=["pascal", "coco"])
    d.add_argument("--root", default=None, help="data root (default $MSANET_DATA or data/)")
    d.add_argument("--base-url", default=None, help="fetch every file from this mirror")
    d.add_argument("--segmentation-aug", default=None, metavar="PATH_OR_URL",
                   help="SegmentationClassAug zip (PASCAL; no official host, see README)")
    d.set_defaults(func=_cmd_download)

    b = sub.add_parser("build-lists", help="build (and cache) the fold episode lists")
    b.add_argument("--benchmark", choices=BENCHMARK_NAMES, required=True)
    b.add_argument("--root", default=None, help="dataset folder or data root")
    b.add_argument("--train-source", action="append", default=[],
                   help="list file of train ids/pairs, repeatable (VOC train + SBD "
                        "train_noval.txt); 'trainaug' = all SegmentationClassAug minus VOC val")
    b.add_argument("--val-source", action="append", default=[], help="list file of val ids")
    b.add_argument("--regime", choices=["bam", "pfenet", "both"], default="both")
    b.add_argument("--min-pixels", type=int, default=None)
    b.add_argument("--force", action="store_true", help="ignore the caches")
    b.set_defaults(func=_cmd_build_lists)

    s = sub.add_parser("show", help="draw a few episodes into a picture")
    s.add_argument("--benchmark", choices=BENCHMARK_NAMES, default="toy")
    s.add_argument("--root", default=None)
    s.add_argument("--fold", type=int, default=0)
    s.add_argument("--shots", type=int, default=1)
    s.add_argument("--split", choices=["train", "val"], default="val")
    s.add_argument("--regime", choices=["bam", "pfenet"], default="bam")
    s.add_argument("--count", type=int, default=4, help="number of episodes")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument("--out", type=Path, default=Path("outputs/episodes.png"))
    s.set_defaults(func=_cmd_show)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("msanet-data", lambda: args.func(args), debug=args.debug)


if __name__ == "__main__":
    sys.exit(main())
