"""Train, export and evaluate the toy models shipped in ``checkpoints/toy/`` (README tables).

    python scripts/train_toy_models.py stage0            # stage 0 -> checkpoints/toy/stage0/
    python scripts/train_toy_models.py train --jobs 2    # 4 folds (stages 1 + 2) + ablation seeds
    python scripts/train_toy_models.py evaluate --folds 0 1   # scores -> checkpoints/toy/results/
    python scripts/train_toy_models.py table             # the README tables from those files
    python scripts/train_toy_models.py figure            # docs/img/toy_predictions.png

Every run is the project's own command, ``msanet-train`` with the toy config, in its own
process (``--jobs`` of them side by side, one thread each): stage 0 once in
``runs/toy/stage0``; per fold stages 1 and 2 in ``runs/toy/fold<f>`` (stage 1 starts from the
stage-0 export in ``--ship``); finished stages are reused (``--resume``). The best stage-2
checkpoint of each fold is exported to ``<ship>/fold<f>/msanet_1shot.pth``. The schedule is
longer than toy.yaml's demo budget (``SHIPPED_EPOCHS``; ``--*-epochs`` change it). ``--runs``
and ``--ship`` (default ``runs/toy`` and ``checkpoints/toy``) keep an experiment apart from the
shipped files; ``--device cuda --workers N`` run the same on a GPU.

The ablation trains stage 2 on fold 0 with the same budget (``--ablation-epochs``) and fold 0's
frozen stage-1 base learner for each row and for ``--train-seeds`` training seeds
(``runs/toy/ablation/<row>_seed<s>``).

Evaluation is the authors' protocol (``msanet_lib.evaluation.evaluate``) with ``--episodes``
episodes per test seed (default 1000) and the first ``--seeds`` of their 5 test seeds (default
2). The 5-shot rows use the 1-shot model with its shots averaged uniformly
(``msanet_for_shots``). The training-free prototype baseline takes the fold's frozen backbone
and a threshold chosen on 320 base-class training episodes.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import torch

from msanet_lib import course
from msanet_lib.data.datasets import FewShotDataset, collate_episodes
from msanet_lib.data.toy import toy_classes
from msanet_lib.data.transforms import test_transform
from msanet_lib.evaluation.metrics import MultiClassIoU
from msanet_lib.evaluation.protocol import SEEDS, evaluate
from msanet_lib.model.baselines import AllForeground, PrototypeBaseline, choose_threshold
from msanet_lib.model.msanet import MSANet, msanet_for_shots
from msanet_lib.model.pspnet import PSPNet
from msanet_lib.training.checkpoint import export_model, load_checkpoint
from msanet_lib.training.config import load_config
from msanet_lib.training.data import base_class_dataset
from msanet_lib.utils import REPO_ROOT

RUNS = REPO_ROOT / "runs" / "toy"
SHIP = REPO_ROOT / "checkpoints" / "toy"
# The shipped models train longer than toy.yaml's budget, which is sized for msanet-demo (one
# fold in about 16 minutes): stage 2 at 3000 instead of 1200 iterations gained 8 mIoU in fold 0,
# and at 4950 another 5.4 (docs/toy-world.md sections 5 and 6). Epochs per stage (stage 0: 375
# iterations of batch 16 per epoch; stages 1 and 2: about 200 iterations of batch 8 per epoch);
# ``--*-epochs`` change them.
SHIPPED_EPOCHS = {"stage0": 8, "base": 10, "meta": 25}


class Layout:
    """Where one set of runs lives (``runs``) and where its products go (``ship``: the stage-0
    export, one MSANet per fold, the result files), plus how every ``msanet-train`` is run."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.runs = Path(args.runs).resolve()
        self.ship = Path(args.ship).resolve()
        self.results = self.ship / "results"
        self.stage0 = self.ship / "stage0" / "resnet_toy.pth"
        self.device = args.device
        self.workers = args.workers
        self.extra = [a for value in args.set for a in ("--set", value)]
        self.epochs = {"stage0": args.stage0_epochs, "base": args.base_epochs,
                       "meta": args.meta_epochs,
                       "ablation": args.ablation_epochs or args.meta_epochs}

    def schedule(self, *stages: str) -> list[str]:
        key = {"stage0": "pretrain", "base": "base", "meta": "meta", "ablation": "meta"}
        return [a for st in stages for a in ("--set", f"{key[st]}.epochs={self.epochs[st]}")]

    def fold_checkpoint(self, fold: int) -> Path:
        return self.ship / f"fold{fold}" / "msanet_1shot.pth"

    def ablation_dir(self, row: str, seed: int) -> Path:
        return self.runs / "ablation" / f"{SLUGS[row]}_seed{seed}"


ABLATION = {
    "prototype + prior (PFENet-like)": dict(use_multi_similarity=False, use_attention=False,
                                            use_base_learner=False),
    "+ multi-similarity": dict(use_multi_similarity=True, use_attention=False,
                               use_base_learner=False),
    "+ attention": dict(use_multi_similarity=True, use_attention=True, use_base_learner=False),
    "+ base-learner ensemble (= MSANet)": dict(use_multi_similarity=True, use_attention=True,
                                               use_base_learner=True),
}
SLUGS = dict(zip(ABLATION, ("pfenet", "multi_similarity", "attention", "msanet")))
TRAIN_SEED = 321  # the toy config's seed
THRESHOLDS = [round(0.05 * i, 2) for i in range(4, 20)]


# --------------------------------------------------------------------------------------------
# Training: msanet-train processes
# --------------------------------------------------------------------------------------------

def _msanet_train(lay: Layout, args: list[str], log: Path, threads: int) -> None:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    log.parent.mkdir(parents=True, exist_ok=True)
    start = time.time()
    runtime = ["--device", lay.device] + (["--workers", str(lay.workers)]
                                          if lay.workers is not None else [])
    with log.open("a") as fh:
        cmd = [sys.executable, "-m", "msanet_lib.training", "--no-progress", "--resume",
               *runtime, *args, *lay.extra]
        fh.write(f"$ {' '.join(cmd[1:])}\n")
        fh.flush()
        code = subprocess.call(cmd, stdout=fh, stderr=subprocess.STDOUT, env=env)
    print(f"{'done' if code == 0 else f'FAILED ({code})'} in {(time.time() - start) / 60:.1f} "
          f"min: msanet-train {' '.join(args)} (log {log})", flush=True)
    if code != 0:
        raise RuntimeError(f"msanet-train {' '.join(args)} failed; see {log}")


def stage0(lay: Layout, threads: int) -> None:
    out = lay.runs / "stage0"
    _msanet_train(lay, ["--stage", "pretrain", "--out", str(out), *lay.schedule("stage0")],
                  lay.runs / "stage0.log", threads)
    ckpt = load_checkpoint(out / "pretrain" / "best.pth")
    backbone = {k: v for k, v in ckpt["state_dict"].items() if k.startswith("layer")}
    lay.stage0.parent.mkdir(parents=True, exist_ok=True)
    export_model(lay.stage0, stage="pretrain", model_config=ckpt["model_config"],
                 state_dict=backbone, metrics=ckpt["metrics"], config=ckpt["config"])
    done = json.loads((out / "pretrain" / "done.json").read_text())
    print(f"stage 0: val attribute mIoU {100 * done['best_miou']:.2f} in "
          f"{done['seconds'] / 60:.1f} min -> {lay.stage0} "
          f"({lay.stage0.stat().st_size / 2**20:.1f} MiB)", flush=True)


def _fold_job(lay: Layout, fold: int, threads: int) -> None:
    # stage 1 starts from this layout's stage 0 (the shipped one by default, which is also
    # what ``base.init: imagenet`` resolves to)
    _msanet_train(lay, ["--fold", str(fold), "--out", str(lay.runs / f"fold{fold}"),
                        "--set", f"base.init={lay.stage0}", *lay.schedule("base", "meta")],
                  lay.runs / f"fold{fold}.log", threads)
    export_fold(lay, fold)


def _ablation_job(lay: Layout, row: str, seed: int, threads: int) -> None:
    base = lay.runs / "fold0" / "base" / "best.pth"
    while not (lay.runs / "fold0" / "base" / "done.json").is_file():
        time.sleep(10)  # waits for fold 0's stage 1 (running in another job)
    out = lay.ablation_dir(row, seed)
    args = ["--stage", "meta", "--fold", "0", "--out", str(out),
            "--set", f"seed={seed}", "--set", f"meta.base_learner={base}",
            *lay.schedule("ablation")]
    for key, value in ABLATION[row].items():
        args += ["--set", f"model.{key}={str(value).lower()}"]
    _msanet_train(lay, args, out / "train.log", threads)


def export_fold(lay: Layout, fold: int) -> Path:
    best = lay.runs / f"fold{fold}" / "meta_1shot" / "best.pth"
    ckpt = load_checkpoint(best)
    target = lay.fold_checkpoint(fold)
    target.parent.mkdir(parents=True, exist_ok=True)
    export_model(target, stage="meta", model_config=ckpt["model_config"],
                 state_dict=ckpt["state_dict"], metrics=ckpt["metrics"], config=ckpt["config"])
    print(f"fold {fold}: exported -> {target} ({target.stat().st_size / 2**20:.1f} MiB)",
          flush=True)
    return target


def train(lay: Layout, folds: list[int], train_seeds: int, jobs: int, ablation: bool,
          threads: int | None = None) -> None:
    if not lay.stage0.is_file():
        raise SystemExit(f"No stage 0 at {lay.stage0}: run the stage0 command first.")
    tasks = [(_fold_job, (f,)) for f in folds]
    if ablation:
        seeds = [TRAIN_SEED + i for i in range(train_seeds)]
        tasks += [(_ablation_job, (row, s)) for s in seeds for row in ABLATION]
    threads = threads or max(1, (os.cpu_count() or 1) // jobs)
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(fn, lay, *args, threads) for fn, args in tasks]
        for fut in futures:
            fut.result()


# --------------------------------------------------------------------------------------------
# Evaluation
# --------------------------------------------------------------------------------------------

def _score(model: torch.nn.Module, fold: int, shots: int, episodes: int,
           seeds: tuple[int, ...], device: str = "cpu", workers: int = 0) -> dict[str, Any]:
    data = FewShotDataset(benchmark="toy", fold=fold, split="val", shots=shots)
    result = evaluate(model.to(device), data, episodes=episodes, seeds=seeds, device=device,
                      batch_size=16 if device == "cpu" else 50, num_workers=workers,
                      progress=False)
    model.cpu()
    per_class = [statistics.fmean(s.class_iou[j] for s in result.seeds)
                 for j in range(len(result.seeds[0].class_ids))]
    return {"miou": 100 * result.mean("miou"), "fb_iou": 100 * result.mean("fb_iou"),
            "miou_meta": 100 * result.mean("miou_meta"),
            "class_iou": {str(c): 100 * v for c, v in zip(result.seeds[0].class_ids, per_class)},
            "episodes": episodes, "seeds": list(seeds)}


def _load(path: Path, shots: int = 1) -> MSANet:
    ckpt = load_checkpoint(path)
    return msanet_for_shots(ckpt["model_config"], ckpt["state_dict"], shots).eval()


@torch.no_grad()
def base_miou(model: MSANet, fold: int, device: str = "cpu", workers: int = 0) -> float:
    """Base-class mIoU of the model's frozen base learner on every val image (128 canvas)."""
    psp = PSPNet(backbone=model.config.backbone, num_classes=model.config.num_base_classes,
                 hidden=model.config.base_hidden)
    state = {k.replace("learner_base.0.", "ppm.").replace("learner_base.1.", "cls."): v
             for k, v in model.state_dict().items()
             if k.startswith(("layer", "learner_base."))}
    psp.load_state_dict(state)
    psp.to(device).eval()
    cfg = load_config("toy", {"fold": fold})
    data = base_class_dataset(cfg, split="val", image_size=cfg.base.image_size)
    meter = MultiClassIoU(psp.num_classes)
    loader = torch.utils.data.DataLoader(data, batch_size=32, collate_fn=collate_episodes,
                                         num_workers=workers)
    for batch in loader:
        meter.update(psp(batch["image"].to(device)).argmax(1).cpu(), batch["label"])
    return 100 * meter.miou


def prototype_baseline(model: MSANet, fold: int, episodes: int, seeds: tuple[int, ...],
                       device: str = "cpu", workers: int = 0) -> dict[str, Any]:
    """The training-free baseline on the fold's frozen backbone, threshold from base classes."""
    baseline = PrototypeBaseline(model._backbone).eval()
    train_eps = FewShotDataset(benchmark="toy", fold=fold, split="train", shots=1, seed=0,
                               transform=test_transform(128))
    batches = [collate_episodes([train_eps[i] for i in range(s, s + 16)])
               for s in range(0, 320, 16)]
    baseline.threshold, curve = choose_threshold(baseline, batches, THRESHOLDS)
    row = _score(baseline, fold, 1, episodes, seeds, device, workers)
    row["threshold"] = baseline.threshold
    row["base_class_iou_by_threshold"] = dict(zip(map(str, THRESHOLDS), curve))
    return row


def evaluate_fold(lay: Layout, fold: int, episodes: int, seeds: tuple[int, ...],
                  device: str = "cpu", workers: int = 0) -> dict[str, Any]:
    start = time.time()
    row: dict[str, Any] = {}
    path = lay.fold_checkpoint(fold)
    if not path.is_file():  # trained but not exported (e.g. stopped at a deadline)
        path = export_fold(lay, fold)
    for shots in (1, 5):
        row[f"{shots}shot"] = _score(_load(path, shots), fold, shots, episodes, seeds, device,
                                     workers)
    model = _load(path)
    row["prototype_1shot"] = prototype_baseline(model, fold, episodes, seeds, device, workers)
    row["all_foreground_1shot"] = _score(AllForeground(), fold, 1, episodes, seeds[:1], device,
                                         workers)
    row["base_miou"] = base_miou(model, fold, device, workers)
    row["cls_merge"] = [round(v, 4) for v in model.cls_merge.weight.flatten().tolist()]
    row["gram_merge"] = [round(v, 4) for v in model.gram_merge.weight.flatten().tolist()]
    for stage in ("base", "meta_1shot"):
        done = lay.runs / f"fold{fold}" / stage / "done.json"
        if done.is_file():
            row[f"{stage}_train_minutes"] = round(json.loads(done.read_text())["seconds"] / 60, 1)
    row["eval_minutes"] = round((time.time() - start) / 60, 1)
    return row


def evaluate_ablation(lay: Layout, train_seeds: int, episodes: int, seeds: tuple[int, ...],
                      device: str = "cpu", workers: int = 0) -> dict[str, Any]:
    """Every finished ablation run (up to ``train_seeds`` training seeds per row), scored alike."""
    rows: dict[str, Any] = {}
    for row in ABLATION:
        runs = []
        for s in [TRAIN_SEED + i for i in range(train_seeds)]:
            best = lay.ablation_dir(row, s) / "meta_1shot" / "best.pth"
            done = best.parent / "done.json"
            if not done.is_file():
                continue  # not trained (yet): reported by the count of runs
            r = _score(_load(best), 0, 1, episodes, seeds, device, workers)
            r["train_seed"] = s
            r["iterations"] = json.loads(done.read_text())["iterations"]
            runs.append(r)
        if not runs:
            continue
        rows[row] = {"runs": runs, **{
            f"{k}_{stat}": (fn([r[k] for r in runs]) if len(runs) > 1 or stat == "mean" else None)
            for k in ("miou", "fb_iou", "miou_meta")
            for stat, fn in (("mean", statistics.fmean), ("std", statistics.stdev))}}
        print(row, f"{rows[row]['miou_mean']:.2f} over {len(runs)} run(s)", flush=True)
    return rows


# --------------------------------------------------------------------------------------------
# Tables
# --------------------------------------------------------------------------------------------

def markdown(results: Path = SHIP / "results") -> str:
    """The README tables from ``<ship>/results/*.json``."""
    folds = {int(p.stem[4:]): json.loads(p.read_text())
             for p in sorted(results.glob("fold*.json"))}
    lines = ["| fold | 1-shot mIoU | 1-shot FB-IoU | 5-shot mIoU | meta_out 1-shot | "
             "prototype baseline (t) | all-foreground | base learner (base mIoU) |",
             "|---|---|---|---|---|---|---|---|"]
    for fold, r in folds.items():
        proto = r["prototype_1shot"]
        lines.append(f"| {fold} | {r['1shot']['miou']:.2f} | {r['1shot']['fb_iou']:.2f} | "
                     f"{r['5shot']['miou']:.2f} | {r['1shot']['miou_meta']:.2f} | "
                     f"{proto['miou']:.2f} ({proto['threshold']:.2f}) | "
                     f"{r['all_foreground_1shot']['miou']:.2f} | {r['base_miou']:.2f} |")
    if folds:
        def mean(get) -> float:  # noqa: ANN001
            return statistics.fmean(get(r) for r in folds.values())
        lines.append(
            f"| **mean** | **{mean(lambda r: r['1shot']['miou']):.2f}** | "
            f"{mean(lambda r: r['1shot']['fb_iou']):.2f} | "
            f"**{mean(lambda r: r['5shot']['miou']):.2f}** | "
            f"{mean(lambda r: r['1shot']['miou_meta']):.2f} | "
            f"{mean(lambda r: r['prototype_1shot']['miou']):.2f} | "
            f"{mean(lambda r: r['all_foreground_1shot']['miou']):.2f} | "
            f"{mean(lambda r: r['base_miou']):.2f} |")
        names = {c.id: c.name for c in toy_classes()}
        lines += ["", "| fold | novel-class IoU, 1-shot (class: IoU) |", "|---|---|"]
        for fold, r in folds.items():
            cells = ", ".join(f"{names.get(int(c), c)}: {v:.1f}"
                              for c, v in r["1shot"]["class_iou"].items())
            lines.append(f"| {fold} | {cells} |")
    ablation = results / "ablation.json"
    if ablation.is_file():
        rows = json.loads(ablation.read_text())
        lines += ["", "| model (fold 0, 1-shot) | mIoU (final_out) | FB-IoU | mIoU (meta_out) | "
                      "training seeds |", "|---|---|---|---|---|"]
        fold0 = folds.get(0)
        if fold0:
            lines.append(f"| all foreground | {fold0['all_foreground_1shot']['miou']:.2f} | "
                         f"{fold0['all_foreground_1shot']['fb_iou']:.2f} | - | - |")
            p = fold0["prototype_1shot"]
            lines.append(f"| training-free prototype (t = {p['threshold']:.2f}) | "
                         f"{p['miou']:.2f} | {p['fb_iou']:.2f} | - | - |")
        def cell(r: dict, key: str) -> str:
            std = r[f"{key}_std"]
            return f"{r[f'{key}_mean']:.2f}" + (f" +- {std:.2f}" if std is not None else "")

        for name, r in rows.items():
            each = ", ".join(f"{x['miou']:.1f}" for x in r["runs"])
            lines.append(f"| {name} | {cell(r, 'miou')} ({each}) | {cell(r, 'fb_iou')} | "
                         f"{cell(r, 'miou_meta')} | {len(r['runs'])} |")
    return "\n".join(lines)


@torch.no_grad()
def figure(fold: int = 0, candidates: int = 64) -> Path:
    """Fold-0 showcase chosen by measured IoU: the two best, the median and the worst of
    ``candidates`` validation episodes (seed 510), each titled with its IoU."""
    from msanet_lib.viz.episodes import draw_episodes

    model, _ = course.load_toy_msanet(fold, 1, verbose=False)
    data = FewShotDataset(benchmark="toy", fold=fold, split="val", shots=1, seed=SEEDS[0])
    episodes = [data[i] for i in range(candidates)]
    batch = collate_episodes(episodes)
    pred = model(batch["query_img"], batch["support_imgs"], batch["support_masks"])[0].argmax(1)
    target, valid = batch["query_mask"] == 1, batch["query_mask"] != 255
    inter = ((pred == 1) & target).flatten(1).sum(1)
    union = (((pred == 1) & valid) | target).flatten(1).sum(1).clamp_min(1)
    iou = (inter / union).tolist()
    order = sorted(range(candidates), key=iou.__getitem__, reverse=True)
    picks = [(order[0], "best"), (order[1], "2nd best"), (order[candidates // 2], "median"),
             (order[-1], "worst")]
    fig = draw_episodes([episodes[i] for i, _ in picks], {c.id: c.name for c in toy_classes()},
                        prediction=[pred[i] for i, _ in picks],
                        prediction_titles=[f"prediction ({tag}): IoU {100 * iou[i]:.0f}"
                                           for i, tag in picks])
    out = REPO_ROOT / "docs" / "img" / "toy_predictions.png"
    fig.savefig(out, dpi=110)
    print(f"{out.relative_to(REPO_ROOT)}: episodes {[i for i, _ in picks]} of {candidates}, IoU "
          f"{[round(100 * iou[i], 1) for i, _ in picks]}, mean IoU {100 * sum(iou) / candidates:.1f}")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("command", choices=("stage0", "train", "evaluate", "table", "figure"))
    p.add_argument("--folds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--jobs", type=int, default=2, help="training processes side by side")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads per training process (default: CPUs / jobs)")
    p.add_argument("--train-seeds", type=int, default=3, help="training seeds per ablation row")
    p.add_argument("--no-ablation", action="store_true", help="train/evaluate the folds only")
    p.add_argument("--ablation-only", action="store_true", help="train/evaluate the ablation only")
    p.add_argument("--episodes", type=int, default=1000, help="episodes per test seed")
    p.add_argument("--ablation-seeds", type=int, default=None,
                   help="test seeds for the ablation rows (default: --seeds)")
    p.add_argument("--seeds", type=int, default=2,
                   help="how many of the authors' 5 test seeds (510, 365, 382, 322, 988)")
    p.add_argument("--runs", default=str(RUNS), help="training runs (default runs/toy)")
    p.add_argument("--ship", default=str(SHIP),
                   help="stage-0 export, fold models and results (default checkpoints/toy)")
    p.add_argument("--device", default="cpu", help="cpu or cuda, for training and evaluation")
    p.add_argument("--workers", type=int, default=None,
                   help="DataLoader workers per process (default: the config's)")
    p.add_argument("--stage0-epochs", type=int, default=SHIPPED_EPOCHS["stage0"])
    p.add_argument("--base-epochs", type=int, default=SHIPPED_EPOCHS["base"])
    p.add_argument("--meta-epochs", type=int, default=SHIPPED_EPOCHS["meta"])
    p.add_argument("--ablation-epochs", type=int, default=None,
                   help="stage-2 epochs of the ablation runs (default: --meta-epochs)")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="passed to every msanet-train run (repeatable)")
    args = p.parse_args()
    lay = Layout(args)
    seeds = tuple(SEEDS[: args.seeds])
    workers = args.workers or 0
    if args.command == "stage0":
        stage0(lay, threads=args.threads or os.cpu_count() or 1)
    elif args.command == "train":
        train(lay, [] if args.ablation_only else args.folds, args.train_seeds, args.jobs,
              not args.no_ablation, args.threads)
    elif args.command == "figure":
        figure()
        return
    elif args.command == "evaluate":
        lay.results.mkdir(parents=True, exist_ok=True)
        if not args.ablation_only:
            for fold in args.folds:
                row = evaluate_fold(lay, fold, args.episodes, seeds, args.device, workers)
                (lay.results / f"fold{fold}.json").write_text(json.dumps(row, indent=1))
                print(f"fold {fold}: 1-shot {row['1shot']['miou']:.2f}, 5-shot "
                      f"{row['5shot']['miou']:.2f}, prototype {row['prototype_1shot']['miou']:.2f}, "
                      f"base {row['base_miou']:.2f}", flush=True)
        if not args.no_ablation:
            ab_seeds = tuple(SEEDS[: args.ablation_seeds]) if args.ablation_seeds else seeds
            rows = evaluate_ablation(lay, args.train_seeds, args.episodes, ab_seeds, args.device,
                                     workers)
            (lay.results / "ablation.json").write_text(json.dumps(rows, indent=1))
    print(markdown(lay.results))


if __name__ == "__main__":
    main()
