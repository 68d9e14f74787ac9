"""``msanet-train`` / ``python -m msanet_lib.training``: train MSANet's two stages.

Examples::

    msanet-train                                   # toy benchmark, fold 0, 1-shot, both stages
    msanet-train --config pascal_resnet50 --fold 2 --shots 5
    msanet-train --stage meta --shots 5            # reuse the fold's stage-1 base learner
    msanet-train --stage pretrain --out runs/toy/stage0   # stage 0 (shipped: no need to run)
    msanet-train --resume                          # continue an interrupted run
    msanet-train --set meta.epochs=3 --set runtime.workers=0
    msanet-train --config pascal_resnet50 --fold 1 --regime pfenet   # = --set data.regime=pfenet
    msanet-train --config pascal_resnet50 --lists lists/pascal/fss_list \
        --base-annotations data/base_annotation/pascal          # the authors' list and label files
    torchrun --nproc_per_node=4 -m msanet_lib.training --config coco_resnet50 --fold 1

The toy data are generated on first use. Ctrl-C (or SIGTERM) saves ``last.pth`` at the next
step and exits; ``--resume`` continues exactly where it stopped.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from msanet_lib.runtime import run_command
from msanet_lib.training.config import (
    DEFAULT_CONFIG,
    deep_merge,
    load_config,
    parse_override,
)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="msanet-train",
        description="Train MSANet: stage 1 (PSPNet base learner) and stage 2 (meta learner).",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=__doc__.split("Examples::", 1)[1] if __doc__ else None,
    )
    p.add_argument("--config", default=DEFAULT_CONFIG,
                   help="config name in msanet_lib/configs (toy, pascal_resnet50, "
                        "pascal_resnet101, pascal_vgg16_bn, coco_resnet50, coco_resnet101) "
                        "or a YAML path (default: toy)")
    p.add_argument("--stage", choices=("pretrain", "base", "meta", "both"), default="both",
                   help="pretrain = stage 0 (the toy world's ImageNet), base = stage 1, "
                        "meta = stage 2, both = stage 1 then stage 2 (default)")
    p.add_argument("--fold", type=int, help="test fold 0..3 (default: the config's)")
    p.add_argument("--shots", type=int, help="support images per episode, e.g. 1 or 5")
    p.add_argument("--device", choices=("auto", "cpu", "cuda", "mps"),
                   help="default auto: CUDA, then MPS, then CPU")
    p.add_argument("--amp", choices=("none", "bf16", "fp16"), help="mixed precision")
    p.add_argument("--channels-last", action="store_true", default=None,
                   help="NHWC memory format (faster convolutions on recent GPUs/CPUs)")
    p.add_argument("--compile", action="store_true", default=None, help="torch.compile the model")
    p.add_argument("--workers", type=int, help="DataLoader worker processes")
    p.add_argument("--regime", choices=("bam", "pfenet"),
                   help="training episode lists: bam drops images showing a novel class (BAM's "
                        "lists, MSANet's default), pfenet keeps them with novel pixels as "
                        "background (data.regime)")
    p.add_argument("--lists", metavar="DIR",
                   help="the authors' fss_list folder (train/ and val/ with data_list_<fold>.txt "
                        "and sub_class_file_list_<fold>.txt), read as given instead of building "
                        "the lists (data.lists)")
    p.add_argument("--base-annotations", metavar="DIR",
                   help="the authors' pre-generated base labels (<DIR>/{train,val}/<fold>/), or "
                        "on_the_fly (default: remap the labels; data.base_annotations)")
    p.add_argument("--out", help="output folder (default runs/<config name>/fold<f>)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run in --out: finished stages are skipped, an "
                        "interrupted one continues from its last.pth")
    p.add_argument("--overwrite", action="store_true",
                   help="start again even if --out holds a run (its checkpoints are replaced)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override any config key, e.g. --set meta.epochs=3 (repeatable)")
    p.add_argument("--no-progress", action="store_true", help="no tqdm bars (log files only)")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def overrides_from_args(args: argparse.Namespace) -> dict[str, Any]:
    """The command-line options as a nested config override."""
    over: dict[str, Any] = {}
    for key in ("fold", "shots", "out"):
        if getattr(args, key) is not None:
            over[key] = getattr(args, key)
    runtime = {k: getattr(args, k) for k in ("device", "amp", "channels_last", "compile",
                                              "workers") if getattr(args, k) is not None}
    if args.no_progress:
        runtime["progress"] = False
    if runtime:
        over["runtime"] = runtime
    data = {k: getattr(args, k) for k in ("regime", "lists", "base_annotations")
            if getattr(args, k) is not None}
    if data:
        over["data"] = data
    for text in args.set:
        over = deep_merge(over, parse_override(text))
    return over


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("msanet-train", lambda: train(args), debug=args.debug)


def train(args: argparse.Namespace) -> int:
    """The command's body: the config is read and checked before anything is trained."""
    cfg = load_config(args.config, overrides_from_args(args))
    from msanet_lib.training.data import ensure_data
    from msanet_lib.training.distributed import barrier, cleanup_distributed, init_distributed
    from msanet_lib.training.pipeline import run_training

    ctx = init_distributed(cfg.runtime.device, cfg.runtime.dist_timeout_minutes)
    try:
        if ctx.is_main:
            ensure_data(cfg)
        barrier(ctx)
        summary = run_training(cfg, stage=args.stage, resume=args.resume,
                               overwrite=args.overwrite, ctx=ctx)
    finally:
        cleanup_distributed()
    return 130 if any(s.get("interrupted") for s in summary.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
