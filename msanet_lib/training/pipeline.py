"""Run the two stages of a config: the function behind ``msanet-train`` and ``msanet-demo``.

Output folder (``cfg.out``, default ``runs/<name>/fold<f>``)::

    pretrain/          stage 0 (``--stage pretrain``, toy world only needs it once: it sees no
                       class, so every fold can start from the same export.pth)
    base/              stage 1, shared by 1-shot and 5-shot runs of the fold
        last.pth best.pth export.pth log.csv log.jsonl iterations.csv curves.png done.json
    meta_<K>shot/      stage 2 for K shots, same files
    config.yaml        the resolved config of the last run started here

A stage whose ``done.json`` exists is complete; with ``resume`` it is skipped, a stage with a
``last.pth`` continues from it, and a fresh folder starts from scratch. Without ``resume`` an
existing run is never overwritten unless ``overwrite`` is given.
"""

from __future__ import annotations

import copy
import json
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import torch
import yaml

from msanet_lib.runtime import set_tf32, slow_amp_note
from msanet_lib.training.checkpoint import load_checkpoint
from msanet_lib.training.config import TrainConfig, config_from_dict
from msanet_lib.training.distributed import DistContext, barrier, init_distributed
from msanet_lib.training.engine import StageResult, Trainer, seed_all
from msanet_lib.training.stage0 import build_pretrain_stage
from msanet_lib.training.stage1 import build_base_stage
from msanet_lib.training.stage2 import build_meta_stage
from msanet_lib.utils import REPO_ROOT

STAGES = ("base", "meta")          # what ``stage="both"`` runs
ALL_STAGES = ("pretrain", *STAGES)
# keys that may change between an interrupted run and its resumption; ``per_fold`` only says
# where a value came from (the values in use are compared in their sections)
_RUNTIME_ONLY = ("runtime", "out", "per_fold")


def run_dir(cfg: TrainConfig) -> Path:
    """The run's output folder: ``cfg.out`` or ``runs/<name>/fold<fold>``."""
    return Path(cfg.out).expanduser() if cfg.out else REPO_ROOT / "runs" / cfg.name / f"fold{cfg.fold}"


def stage_dir(cfg: TrainConfig, stage: str) -> Path:
    if stage in ("pretrain", "base"):
        return run_dir(cfg) / stage
    return run_dir(cfg) / f"meta_{cfg.shots}shot"


def _recipe_view(data: dict[str, Any], stage: str) -> dict[str, Any]:
    """The parts of a config that define a stage's result (what must match to resume it)."""
    keep = {k: copy.deepcopy(v) for k, v in data.items() if k not in _RUNTIME_ONLY}
    if stage == "pretrain":  # fold, shots and the later stages do not change stage 0
        return {"pretrain": keep.get("pretrain"), "seed": keep.get("seed"),
                "backbone": keep.get("model", {}).get("backbone")}
    keep.pop("pretrain", None)  # stage 1 records the weights file it starts from instead
    if stage == "base":
        keep.pop("meta", None)
        keep.pop("shots", None)
        keep.get("model", {}).pop("shots", None)
    return keep


def _check_same_recipe(saved: dict[str, Any], cfg: TrainConfig, stage: str, where: Path) -> None:
    a, b = _recipe_view(saved, stage), _recipe_view(cfg.to_dict(), stage)
    if a == b:
        return
    diffs = []
    for section in sorted(set(a) | set(b)):
        va, vb = a.get(section), b.get(section)
        if isinstance(va, dict) and isinstance(vb, dict):
            diffs += [f"{section}.{k}: {va.get(k)!r} -> {vb.get(k)!r}"
                      for k in sorted(set(va) | set(vb)) if va.get(k) != vb.get(k)]
        elif va != vb:
            diffs.append(f"{section}: {va!r} -> {vb!r}")
    raise ValueError(f"{where} was trained with another config ({'; '.join(diffs[:6])}). "
                     "Resume with the same config, or choose another --out.")


def per_fold_note(cfg: TrainConfig, stage: str) -> str:
    """`` (fold 1 of meta.epochs {0: 200, 1: 500, ...})`` for each value of ``stage`` that the
    config gave per fold, else ``""``: the run header says which table a number came from."""
    parts = [f"{key} = {getattr(getattr(cfg, stage), key.split('.', 1)[1])} for fold {cfg.fold} "
             f"of {{{', '.join(f'{f}: {v}' for f, v in table.items())}}}"
             for key, table in cfg.per_fold.items() if key.startswith(f"{stage}.")]
    return f" ({'; '.join(parts)})" if parts else ""


def _prepare_stage_dir(cfg: TrainConfig, stage: str, resume: bool, overwrite: bool,
                       ctx: DistContext) -> tuple[Path, Path | None, bool]:
    """Returns (folder, checkpoint to resume from or None, stage already done)."""
    folder = stage_dir(cfg, stage)
    last, done = folder / "last.pth", folder / "done.json"
    if resume:
        if done.is_file():
            saved = json.loads(done.read_text()).get("config")
            if saved:
                _check_same_recipe(saved, cfg, stage, folder)
            return folder, None, True
        if last.is_file():
            _check_same_recipe(load_checkpoint(last)["config"], cfg, stage, folder)
            return folder, last, False
        return folder, None, False
    if last.is_file() or done.is_file():
        if not overwrite:
            raise FileExistsError(
                f"{folder} already holds a training run. Pass --resume to continue it, "
                "--overwrite to start again (its checkpoints are replaced), or --out elsewhere.")
        if ctx.is_main:
            for name in ("last.pth", "best.pth", "export.pth", "done.json", "iterations.csv",
                         "log.csv", "log.jsonl"):
                (folder / name).unlink(missing_ok=True)
            shutil.rmtree(folder / "tb", ignore_errors=True)
    barrier(ctx)
    return folder, None, False


def run_stage(
    cfg: TrainConfig,
    stage: str,
    ctx: DistContext,
    resume: bool = False,
    overwrite: bool = False,
    stop_at_iteration: int | None = None,
) -> dict[str, Any]:
    """Train one stage; returns its summary (also written to ``done.json`` when complete)."""
    folder, resume_from, done = _prepare_stage_dir(cfg, stage, resume, overwrite, ctx)
    if done:
        summary = json.loads((folder / "done.json").read_text())
        if ctx.is_main:
            print(f"[{stage}] already complete in {folder} (best mIoU "
                  f"{100 * summary['best_miou']:.2f}); skipping.")
        return summary
    rt = cfg.runtime
    seed_all(cfg.seed)  # the initial weights of the trainable parts are reproducible too
    if stage == "pretrain":
        spec, recipe = build_pretrain_stage(cfg, ctx.device, amp=rt.amp)
    elif stage == "base":
        init = cfg.base.init
        if init == "stage0":
            init_path = stage_dir(cfg, "pretrain") / "export.pth"
            if not init_path.is_file():
                raise FileNotFoundError(
                    f"base.init=stage0 needs {init_path}: run `msanet-train --stage pretrain` "
                    "first with the same --out, or set base.init to a weights file.")
            init = str(init_path)
        spec, recipe = build_base_stage(cfg, ctx.device, amp=rt.amp, init=init)
    else:
        base = cfg.meta.base_learner
        if base == "stage1":
            base_path: Path | None = stage_dir(cfg, "base") / "best.pth"
            if not base_path.is_file():
                raise FileNotFoundError(
                    f"Stage 2 needs the stage-1 base learner {base_path}: run "
                    "`msanet-train --stage base` (or --stage both) first with the same --out "
                    "and --fold, or set meta.base_learner to a PSPNet best.pth.")
        elif base == "none":
            base_path = None
        else:
            base_path = Path(base).expanduser()
        spec, recipe = build_meta_stage(cfg, ctx.device, base_path, amp=rt.amp)
    trainer = Trainer(spec, recipe, ctx, folder, config=cfg.to_dict(), seed=cfg.seed, amp=rt.amp,
                      channels_last=rt.channels_last, compile=rt.compile, workers=rt.workers,
                      micro_batch_size=rt.micro_batch_size, log_every=rt.log_every, checkpoint_every=rt.checkpoint_every,
                      progress=rt.progress)
    if ctx.is_main:
        if note := slow_amp_note(ctx.device, rt.amp):
            print(f"msanet-train: warning: {note}", file=sys.stderr)
        notes = ", ".join(f"{k}: {v}" for k, v in spec.notes.items())
        print(f"[{stage}] {cfg.name} fold {cfg.fold} {cfg.shots}-shot on {ctx.device} "
              f"(x{ctx.world_size}) | {trainer.iters_per_epoch} it/epoch x {recipe.epochs} "
              f"epochs{per_fold_note(cfg, stage)} | {trainer.plan.describe()} | {notes} | "
              f"-> {folder}")
    result: StageResult = trainer.fit(resume=resume_from, stop_at_iteration=stop_at_iteration)
    summary = {
        "stage": stage, "best_miou": result.best_score, "best_epoch": result.best_epoch,
        "epochs_run": result.epochs_run, "iterations": result.iterations,
        "interrupted": result.interrupted, "seconds": round(result.seconds, 1),
        "best": str(result.best_path), "last": str(result.last_path),
        "world_size": ctx.world_size, "device": str(ctx.device),
        "global_batch": trainer.plan.global_batch, "micro_steps": trainer.plan.micro_steps,
        "batch_plan": trainer.plan.describe(), "config": cfg.to_dict(),
    }
    if ctx.is_main:
        if result.interrupted:
            print(f"[{stage}] stopped at iteration {result.iterations}; continue with --resume "
                  f"(checkpoint {result.last_path}).")
        else:
            export = trainer.export(folder / "export.pth",
                                    metrics={"best_miou": result.best_score,
                                             "best_epoch": result.best_epoch})
            summary["export"] = str(export)
            (folder / "done.json").write_text(json.dumps(summary, indent=1))
            print(f"[{stage}] done in {result.seconds / 60:.1f} min: best val mIoU "
                  f"{100 * result.best_score:.2f} at epoch {result.best_epoch} -> {result.best_path}")
    barrier(ctx)
    return summary


def run_training(
    cfg: TrainConfig,
    stage: str = "both",
    resume: bool = False,
    overwrite: bool = False,
    ctx: DistContext | None = None,
    stop_at_iteration: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Run ``stage`` (``pretrain``, ``base``, ``meta`` or ``both`` = base then meta) of ``cfg``;
    returns each stage's summary."""
    if stage not in (*ALL_STAGES, "both"):
        raise ValueError(f"stage={stage!r}: choose pretrain, base, meta or both.")
    ctx = ctx or init_distributed(cfg.runtime.device, cfg.runtime.dist_timeout_minutes)
    torch.backends.cudnn.benchmark = ctx.device.type == "cuda"
    set_tf32(cfg.runtime.tf32)
    if ctx.is_main:
        folder = run_dir(cfg)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "config.yaml").write_text(yaml.safe_dump(cfg.to_dict(), sort_keys=False))
    start = time.time()
    out: dict[str, dict[str, Any]] = {}
    for name in STAGES if stage == "both" else (stage,):
        out[name] = run_stage(cfg, name, ctx, resume=resume, overwrite=overwrite,
                              stop_at_iteration=stop_at_iteration)
        if out[name].get("interrupted"):
            break
    if ctx.is_main and stage == "both":
        stopped = any(s.get("interrupted") for s in out.values())
        print(f"training {'stopped' if stopped else 'finished'} after "
              f"{(time.time() - start) / 60:.1f} min")
    return out


def load_trained_config(path: str | Path) -> TrainConfig:
    """The TrainConfig stored in a checkpoint or ``done.json``."""
    path = Path(path)
    if path.suffix == ".json":
        data = json.loads(path.read_text())["config"]
    else:
        data = load_checkpoint(path)["config"]
    return config_from_dict(data)


__all__ = ["ALL_STAGES", "load_trained_config", "run_dir", "run_stage", "run_training", "stage_dir"]
