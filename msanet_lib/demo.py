"""``msanet-demo``: the whole method on a laptop CPU, offline, in about a quarter of an hour.

1. generate the toy benchmark if it is missing (``data/toy``);
2. train fold 0 with the toy config: stage 1 (the PSPNet base learner, starting from the shipped
   stage 0, the toy world's ImageNet) and stage 2 (MSANet's meta learner) on 1-shot episodes;
3. evaluate it with 1 and 5 shots (5 shots averaged uniformly) with the authors' protocol on the fold's novel classes (fewer episodes);
4. write figures to ``outputs/``: training curves, episodes with predictions next to the ground
   truth, per-class IoU bars; print the result table.

``MSANET_FAST=1`` shrinks every count (a one-minute smoke run of the same code path). Runs are
kept in ``runs/demo`` (``runs/demo-fast``); running the demo again reuses finished stages and
continues an interrupted one.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch

from msanet_lib.model.baselines import AllForeground
from msanet_lib.runtime import run_command
from msanet_lib.utils import REPO_ROOT, fast_mode

EVAL_EPISODES = 300       # per seed; the paper uses 1000
EVAL_SEEDS = (510, 365)   # the first two of the authors' five test seeds
FAST_EVAL_EPISODES = 10


def _class_names() -> dict[int, str]:
    from msanet_lib.data.toy import toy_classes

    names = {}
    for c in toy_classes():
        names[int(c.id)] = str(getattr(c, "name", f"class {c.id}"))
    return names


def _per_class_bars(results: dict[int, Any], names: dict[int, str], path: Path) -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(8, 3.6))
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    width = 0.8 / max(len(results), 1)
    first = next(iter(results.values()))
    ids = first.seeds[0].class_ids
    for i, (shots, res) in enumerate(sorted(results.items())):
        ious = [sum(s.class_iou[j] for s in res.seeds) / len(res.seeds) for j in range(len(ids))]
        xs = [j + (i - (len(results) - 1) / 2) * width for j in range(len(ids))]
        ax.bar(xs, [100 * (0 if math.isnan(v) else v) for v in ious], width,
               label=f"{shots}-shot (mIoU {100 * res.mean_miou:.1f})")
    ax.set_xticks(range(len(ids)))
    ax.set_xticklabels([names.get(c, str(c)) for c in ids], rotation=20, fontsize=8, ha="right")
    ax.set_ylabel("IoU (%)")
    ax.set_title("Novel classes of fold 0: IoU per class (mean over seeds)")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def _episode_figure(model: torch.nn.Module, dataset: Any, names: dict[int, str], path: Path,
                    device: torch.device, count: int = 4) -> None:
    from msanet_lib.data.datasets import collate_episodes
    from msanet_lib.viz.episodes import draw_episodes

    dataset.seed = EVAL_SEEDS[0]
    step = max(len(dataset) // count, 1)
    episodes = [dataset[i * step] for i in range(count)]
    batch = collate_episodes(episodes)
    with torch.inference_mode():
        out = model(batch["query_img"].to(device), batch["support_imgs"].to(device),
                    batch["support_masks"].to(device))
    pred = out[0].argmax(1).cpu()
    fig = draw_episodes(episodes, names, prediction=list(pred))
    fig.savefig(path, dpi=110)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="msanet-demo", description=__doc__.split("\n\n")[0])
    p.add_argument("--fold", type=int, default=0)
    p.add_argument("--shots", type=int, nargs="+", default=[1, 5])
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--outputs", default=str(REPO_ROOT / "outputs"), help="figures go here")
    p.add_argument("--runs", default=None, help="training folder (default runs/demo[-fast])")
    p.add_argument("--restart", action="store_true", help="train again from scratch")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return run_command("msanet-demo", lambda: demo(args), debug=args.debug)


def check_args(args: argparse.Namespace) -> None:
    """Checked before anything is trained."""
    if not 0 <= args.fold <= 3:
        raise ValueError(f"--fold {args.fold}: the toy benchmark has folds 0, 1, 2 and 3.")
    if any(k < 1 for k in args.shots):
        raise ValueError(f"--shots {' '.join(map(str, args.shots))}: every K must be at least 1.")


def demo(args: argparse.Namespace) -> int:
    """The command's body: train (or reuse) one fold, evaluate every K, draw the figures."""
    check_args(args)
    from msanet_lib.data.lists import dataset_dir
    from msanet_lib.evaluation.protocol import evaluate
    from msanet_lib.model.msanet import msanet_for_shots
    from msanet_lib.runtime import select_device
    from msanet_lib.training.checkpoint import load_checkpoint
    from msanet_lib.training.config import load_config
    from msanet_lib.training.data import episode_dataset
    from msanet_lib.training.distributed import DistContext
    from msanet_lib.training.pipeline import run_training, stage_dir

    fast = fast_mode()
    start = time.time()
    outputs = Path(args.outputs)
    outputs.mkdir(parents=True, exist_ok=True)
    runs = Path(args.runs) if args.runs else REPO_ROOT / "runs" / ("demo-fast" if fast else "demo")
    if args.restart and runs.exists():
        shutil.rmtree(runs)
    device = select_device(args.device)
    print(f"msanet-demo: toy benchmark, fold {args.fold}, {args.shots} shots, device {device}"
          f"{', fast mode (MSANET_FAST=1)' if fast else ''}")
    print(f"data: {dataset_dir('toy')}")
    ctx = DistContext(device=device)
    names = _class_names()
    episodes = FAST_EVAL_EPISODES if fast else EVAL_EPISODES
    seeds = EVAL_SEEDS[:1] if fast else EVAL_SEEDS
    results: dict[int, Any] = {}
    timings: dict[str, float] = {}
    # One model, trained for 1-shot episodes, evaluated with every K: for K > 1 its shots are
    # averaged uniformly (msanet_for_shots). The authors train a separate 5-shot model.
    cfg = load_config("toy", {"fold": args.fold, "shots": 1, "out": str(runs),
                              "runtime": {"device": args.device}})
    t0 = time.time()
    summary = run_training(cfg, stage="both", resume=True, ctx=ctx)
    timings["train"] = time.time() - t0
    if any(s.get("interrupted") for s in summary.values()):
        print("interrupted: run msanet-demo again to continue.")
        return 130
    for stage in ("base", "meta"):
        src = stage_dir(cfg, stage) / "curves.png"
        if src.is_file():
            shutil.copyfile(src, outputs / f"demo_curves_{stage}.png")
    ckpt = load_checkpoint(stage_dir(cfg, "meta") / "best.pth")
    for k in args.shots:
        model = msanet_for_shots(ckpt["model_config"], ckpt["state_dict"], k).to(device).eval()
        val = episode_dataset(load_config("toy", {"fold": args.fold, "shots": k}), split="val",
                              image_size=cfg.meta.image_size)
        t0 = time.time()
        results[k] = evaluate(model, val, episodes=episodes, seeds=seeds, device=device,
                              progress=False)
        results[k].benchmark, results[k].fold, results[k].shots = "toy", args.fold, k
        timings[f"eval {k}-shot"] = time.time() - t0
        _episode_figure(model, val, names, outputs / f"demo_episodes_{k}shot.png", device)

    baseline = evaluate(AllForeground(), val, episodes=episodes, seeds=seeds[:1], device=device,
                        progress=False)
    _per_class_bars(results, names, outputs / "demo_per_class_iou.png")
    print()
    print(f"Toy benchmark, fold {args.fold}: {episodes} episodes x {len(seeds)} seed(s) "
          "(the paper: 1000 x 5)")
    print("| shots | mIoU | FB-IoU | mIoU meta only | base-learner mIoU |")
    print("|---|---|---|---|---|")
    for k, res in sorted(results.items()):
        base = res.mean("miou_base")
        print(f"| {k} | {100 * res.mean_miou:.2f} | {100 * res.mean_fb_iou:.2f} | "
              f"{100 * res.mean('miou_meta'):.2f} | "
              f"{'-' if math.isnan(base) else f'{100 * base:.2f}'} |")
    print(f"| baseline: all foreground | {100 * baseline.mean_miou:.2f} | "
          f"{100 * baseline.mean_fb_iou:.2f} | - | - |")
    report = {"fold": args.fold, "episodes": episodes, "seeds": list(seeds), "fast": fast,
              "seconds": {k: round(v, 1) for k, v in timings.items()},
              "results": {k: r.to_dict() for k, r in results.items()},
              "all_foreground_baseline": baseline.to_dict()}
    (outputs / "demo_results.json").write_text(json.dumps(report, indent=1))
    print(f"\nfigures and demo_results.json in {outputs}; checkpoints in {runs}")
    print(f"total {(time.time() - start) / 60:.1f} min "
          f"({', '.join(f'{k} {v / 60:.1f}' for k, v in timings.items())})")
    return 0


__all__ = ["main"]

if __name__ == "__main__":
    sys.exit(main())
