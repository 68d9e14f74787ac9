"""The training loop shared by both stages: epochs, poly schedule, AMP, DDP, checkpoints, resume.

A stage (:mod:`~msanet_lib.training.stage1`, :mod:`~msanet_lib.training.stage2`) supplies a
:class:`StageSpec`: the model, its parameter groups, the training dataset, a ``step`` that turns
a batch into losses, a ``train_mode`` hook (e.g. BatchNorm fixed) and a ``validate`` that returns
a score to maximise. :class:`Trainer` does the rest, the same way for both, following BAM's
``train.py``:

- before every optimizer step, the poly schedule sets the lr from the 1-based global iteration;
- at the start of epoch ``e`` the global generators are seeded with ``seed + e`` (the authors'
  ``setup_seed(manual_seed + epoch)``; it drives dropout), data comes from
  :class:`~msanet_lib.training.distributed.SeededDataset` so it is independent of that;
- after every epoch (and mid-epoch when ``half_epoch_val``), every process validates its share
  of the validation set and the counts are summed (the score equals a one-process run); a new
  best score writes ``best.pth``; ``stop_interval`` epochs without one stop the stage;
- ``last.pth`` is written after every epoch, every ``checkpoint_every`` iterations, and when the
  process receives SIGINT/SIGTERM (then the stage stops cleanly: resume continues exactly).
"""

from __future__ import annotations

import contextlib
import math
import signal
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset
from tqdm.auto import tqdm

from msanet_lib.runtime import autocast, remove_stale_temps, seed_all, unwrap_model
from msanet_lib.training.checkpoint import (
    capture_rng_state,
    export_model,
    load_checkpoint,
    restore_rng_state,
    save_checkpoint,
)
from msanet_lib.training.distributed import (
    BatchPlan,
    DistContext,
    EpochBatchSampler,
    SeededDataset,
    all_reduce_mean,
    all_reduce_mean_tensor,
    barrier,
    broadcast_object,
)
from msanet_lib.training.run_log import RunLog
from msanet_lib.training.schedule import PolySchedule

# --------------------------------------------------------------------------------------------
# Device-level helpers
# --------------------------------------------------------------------------------------------


@contextlib.contextmanager
def preserved_rng() -> Iterator[None]:
    """Run a block (validation) without changing the global random streams of training."""
    state = capture_rng_state()
    try:
        yield
    finally:
        restore_rng_state(state)


def to_device(batch: Any, device: torch.device, channels_last: bool = False) -> Any:
    """Move every tensor of a (nested) batch to ``device``; 4-D float tensors optionally NHWC."""
    if isinstance(batch, Tensor):
        non_blocking = device.type == "cuda"
        out = batch.to(device, non_blocking=non_blocking)
        if channels_last and out.dim() == 4 and out.is_floating_point():
            out = out.contiguous(memory_format=torch.channels_last)
        return out
    if isinstance(batch, Mapping):
        return {k: to_device(v, device, channels_last) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device, channels_last) for v in batch)
    return batch


# --------------------------------------------------------------------------------------------
# Stage description and trainer
# --------------------------------------------------------------------------------------------


@dataclass
class StepOutput:
    """What one training step returns: the loss to minimise and named parts to log."""

    loss: Tensor
    parts: dict[str, Tensor] = field(default_factory=dict)


@dataclass
class StageSpec:
    """Everything stage-specific the :class:`Trainer` needs.

    Attributes:
        name: ``"base"`` or ``"meta"`` (checkpoint ``stage`` and log folder).
        model: the plain model (not wrapped), already on the device.
        param_groups: SGD groups in the authors' order (the schedule's ``index_split``
            refers to their positions).
        train_set: map-style dataset; items are collated by ``collate``.
        step: ``step(model, batch) -> StepOutput``; ``model`` may be DDP-wrapped.
        validate: ``validate(plain_model, ctx) -> dict`` with at least ``"score"``
            (maximised); other numeric values are logged. Every process calls it: each scores
            its share of the validation data and the counts are summed over the processes,
            so all of them return the same numbers.
        train_mode: puts the model in training mode (e.g. ``train()`` + fixed BN).
        model_config: MSANetConfig fields (saved in checkpoints).
        sync_batchnorm: convert BN to SyncBatchNorm under multi-GPU DDP (stage 1).
        find_unused_parameters: passed to DistributedDataParallel.
        frozen_buffers: no buffer changes in training (every BatchNorm in eval mode, stage 2
            with ``fix_bn``): DDP then skips broadcasting them from rank 0 at every step.
        training_copy: ``training_copy(model) -> module`` computing the same training forward
            with less work and sharing ``model``'s trainable parameters (stage 2:
            :func:`~msanet_lib.model.inference.prepare_for_training`); the steps run on it,
            saving, resuming and validation use ``model``. None: the steps run on ``model``.
        notes: facts for the run summary (initialisation, dataset sizes).
    """

    name: str
    model: nn.Module
    param_groups: list[dict[str, Any]]
    train_set: Dataset
    step: Callable[[nn.Module, Any], StepOutput]
    validate: Callable[[nn.Module, DistContext], dict[str, float]]
    train_mode: Callable[[nn.Module], None]
    model_config: dict[str, Any]
    collate: Callable[[list[Any]], Any] | None = None
    sync_batchnorm: bool = False
    find_unused_parameters: bool = False
    frozen_buffers: bool = False
    training_copy: Callable[[nn.Module], nn.Module] | None = None
    notes: dict[str, Any] = field(default_factory=dict)


@dataclass
class Recipe:
    """The optimisation numbers of a stage (taken from ``base:`` or ``meta:`` of the config)."""

    epochs: int
    batch_size: int
    base_lr: float
    index_split: int
    scale_lr: float
    power: float
    momentum: float
    weight_decay: float
    stop_interval: int
    half_epoch_val: bool = False
    samples_per_epoch: int | None = None


@dataclass
class StageResult:
    """How a stage ended."""

    best_score: float
    best_epoch: float
    epochs_run: int
    iterations: int
    interrupted: bool
    last_path: Path
    best_path: Path
    seconds: float


class _StopFlag:
    """Set by SIGINT/SIGTERM; the loop saves last.pth at the next step boundary and stops."""

    def __init__(self) -> None:
        self.requested = False
        self._old: dict[int, Any] = {}

    def __enter__(self) -> _StopFlag:
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread: no signal handling
                pass
        return self

    def _handle(self, signum: int, frame: Any) -> None:
        if self.requested:  # second Ctrl-C: give up immediately
            raise KeyboardInterrupt
        self.requested = True

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


class Trainer:
    """Runs one stage: ``Trainer(spec, recipe, ctx, ...).fit(resume=...)``.

    Args:
        spec: the stage (model, data, step, validation).
        recipe: epochs, batch size, schedule and optimiser numbers.
        ctx: distributed context (rank, world size, device).
        out_dir: the stage's folder: ``last.pth``, ``best.pth``, logs, curves.
        config: the full training config as a dict (saved in every checkpoint).
        seed: base seed of data order, augmentation and dropout.
        amp: ``"none" | "bf16" | "fp16"``; fp16 uses a GradScaler.
        channels_last, compile: memory format / ``torch.compile`` of the model.
        workers: DataLoader worker processes (pin_memory on CUDA).
        micro_batch_size: most samples one process forwards at once; a larger share of the
            global batch is accumulated over micro-steps (:func:`plan_batches`). None: one.
        log_every: iterations between iteration-log records.
        checkpoint_every: write ``last.pth`` every N iterations too (0: per epoch only).
        progress: show tqdm bars (main process only).
    """

    def __init__(
        self,
        spec: StageSpec,
        recipe: Recipe,
        ctx: DistContext,
        out_dir: str | Path,
        config: Mapping[str, Any],
        seed: int,
        amp: str = "none",
        channels_last: bool = False,
        compile: bool = False,
        workers: int = 0,
        micro_batch_size: int | None = None,
        log_every: int = 10,
        checkpoint_every: int = 0,
        progress: bool = True,
    ) -> None:
        self.spec = spec
        self.recipe = recipe
        self.ctx = ctx
        self.out_dir = Path(out_dir)
        self.config = dict(config)
        self.seed = seed
        self.amp = amp
        self.channels_last = channels_last
        self.log_every = max(1, log_every)
        self.checkpoint_every = checkpoint_every
        self.progress = progress and ctx.is_main
        self.last_path = self.out_dir / "last.pth"
        self.best_path = self.out_dir / "best.pth"
        if ctx.is_main:  # temporary files of saves that a killed run never finished
            remove_stale_temps(self.out_dir)

        model = spec.model
        if channels_last:
            model = model.to(memory_format=torch.channels_last)
        self.plain_model = model
        self.optimizer = torch.optim.SGD(spec.param_groups, lr=recipe.base_lr,
                                         momentum=recipe.momentum,
                                         weight_decay=recipe.weight_decay)
        self._compile = compile
        self._ddp: nn.parallel.DistributedDataParallel | None = None
        self.model = self._wrap()
        self.scaler = torch.amp.GradScaler(ctx.device.type, enabled=(amp == "fp16"))

        self.sampler = EpochBatchSampler(len(spec.train_set), recipe.batch_size, seed,
                                         rank=ctx.rank, world_size=ctx.world_size,
                                         samples_per_epoch=recipe.samples_per_epoch,
                                         micro_batch_size=micro_batch_size)
        self.plan: BatchPlan = self.sampler.plan
        self._weights = self.plan.weights(ctx.rank)  # loss scale of this rank's micro-steps
        self.loader = DataLoader(
            SeededDataset(spec.train_set, seed),
            batch_sampler=self.sampler,
            num_workers=workers,
            collate_fn=spec.collate,
            pin_memory=ctx.device.type == "cuda",
            persistent_workers=workers > 0,
            # A private generator: creating the iterator must not draw from the global stream
            # (dropout), or a run resumed mid-epoch would drift from an uninterrupted one.
            generator=torch.Generator(),
        )
        self.iters_per_epoch = self.sampler.batches_per_epoch()
        self.schedule = PolySchedule(recipe.base_lr, recipe.epochs * self.iters_per_epoch,
                                     recipe.power, recipe.index_split, recipe.scale_lr)
        self.log = (RunLog(self.out_dir, title=f"{config.get('name', '')} {spec.name}")
                    if ctx.is_main else None)

        # loop state (all of it is in the checkpoint)
        self.epoch = 0
        self.iteration = 0
        self.best_score = -1.0  # below any IoU, so the first validation always gives a best.pth
        self.best_epoch: float = -1
        self.keep_epoch = 0
        self.history: list[dict[str, Any]] = []
        self.epoch_sums: dict[str, float] = {}
        self.epoch_count = 0
        self._sums: torch.Tensor | None = None  # running epoch_sums on the device
        self._sum_keys: list[str] = []
        self._checked_at = 0  # last iteration whose losses were read on the host

    def _wrap(self) -> nn.Module:
        """The module the steps call: the training copy (if any) of the plain model, under
        DDP and ``torch.compile`` as configured. Built again after a resume, which may have
        loaded other frozen weights into the plain model than the copy was made from."""
        spec, ctx = self.spec, self.ctx
        wrapped = self.plain_model
        if spec.training_copy is not None:
            wrapped = spec.training_copy(wrapped)
        self._ddp = None
        if ctx.distributed:
            if spec.sync_batchnorm and ctx.device.type == "cuda":
                wrapped = nn.SyncBatchNorm.convert_sync_batchnorm(wrapped)
            device_ids = [ctx.device] if ctx.device.type == "cuda" else None
            wrapped = nn.parallel.DistributedDataParallel(
                wrapped, device_ids=device_ids,
                find_unused_parameters=spec.find_unused_parameters,
                broadcast_buffers=not spec.frozen_buffers)
            self._ddp = wrapped  # no_sync() lives here, also when compile wraps it
        if self._compile:
            wrapped = torch.compile(wrapped)
        return wrapped

    # --- loss accounting without per-step host syncs ------------------------------------------
    def _accumulate(self, parts: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Add one step's losses to the device-side epoch sums; return them stacked (detached)."""
        # float64 keeps the sums identical to adding Python floats (MPS has no float64)
        dtype = torch.float32 if self.ctx.device.type == "mps" else torch.float64
        step = torch.stack([v.detach().to(dtype) for v in parts.values()])
        if self._sums is None:
            self._sum_keys = list(parts)
            start = [self.epoch_sums.get(k, 0.0) for k in parts]
            # a fresh epoch starts from zeros made on the device (no host-to-device copy)
            self._sums = (torch.tensor(start, dtype=dtype, device=step.device) if any(start)
                          else torch.zeros(len(start), dtype=dtype, device=step.device))
        self._sums += step
        return step

    def _check_finite(self, step: torch.Tensor | None = None) -> dict[str, float]:
        """Read the epoch sums (and this step's losses) on the host; raise if any is not finite.

        Under DDP every rank calls this at the same iterations: the check and the returned step
        losses use the all-rank mean, so every rank logs the same number and all of them raise
        together (one rank raising alone would leave the others waiting in a collective).
        """
        if self._sums is None:
            return {}
        n = len(self._sum_keys)
        both = self._sums if step is None else torch.cat([self._sums, step])
        reduced = all_reduce_mean_tensor(both, self.ctx).tolist()
        self.epoch_sums = dict(zip(self._sum_keys, self._sums.tolist()))  # this rank's sums
        values = dict(zip(self._sum_keys, reduced[n:]))
        if not all(math.isfinite(v) for v in reduced):
            raise FloatingPointError(
                f"{self.spec.name} stage: the loss became inf or NaN between iterations "
                f"{self._checked_at + 1} and {self.iteration}; lower base_lr or use --amp none.")
        self._checked_at = self.iteration
        return values

    # --- checkpoints -----------------------------------------------------------------------
    def _metrics(self) -> dict[str, Any]:
        return {"best_score": self.best_score, "best_epoch": self.best_epoch,
                "keep_epoch": self.keep_epoch, "history": self.history,
                "epoch_sums": self.epoch_sums, "epoch_count": self.epoch_count}

    def save(self, path: Path, rng: Mapping[str, Any] | None = None) -> None:
        self._check_finite()  # every rank: brings the device-side loss sums into epoch_sums
        if not self.ctx.is_main:
            return
        save_checkpoint(
            path, stage=self.spec.name, config=self.config, model_config=self.spec.model_config,
            state_dict=self.plain_model.state_dict(), epoch=self.epoch,
            iteration=self.iteration, optimizer=self.optimizer.state_dict(),
            scheduler=self.schedule.state_dict(),
            grad_scaler=self.scaler.state_dict() if self.scaler.is_enabled() else None,
            metrics=self._metrics(), rng=rng)

    def resume(self, path: str | Path) -> None:
        """Restore model, optimizer, schedule, loop counters and random generators."""
        ckpt = load_checkpoint(path)
        if ckpt.get("stage") != self.spec.name:
            raise ValueError(f"--resume {path}: a '{ckpt.get('stage')}' checkpoint cannot resume "
                             f"the '{self.spec.name}' stage.")
        if ckpt.get("format") != "msanet-train-checkpoint":
            raise ValueError(f"--resume {path}: an exported model has no optimizer state; "
                             "resume from last.pth.")
        self.plain_model.load_state_dict(ckpt["state_dict"])
        if self.spec.training_copy is not None:
            self.model = self._wrap()
        self.optimizer.load_state_dict(ckpt["optimizer"])
        saved = ckpt["scheduler"] or {}
        if saved and saved.get("max_iter") != self.schedule.max_iter:
            raise ValueError(
                f"--resume {path}: the checkpoint's schedule has {saved.get('max_iter')} "
                f"iterations, this run {self.schedule.max_iter}. Resume with the same config "
                "(epochs, batch_size, data).")
        if saved:
            self.schedule.load_state_dict(saved)
        if ckpt.get("grad_scaler") and self.scaler.is_enabled():
            self.scaler.load_state_dict(ckpt["grad_scaler"])
        self.epoch = int(ckpt["epoch"])
        self.iteration = int(ckpt["iteration"])
        m = ckpt["metrics"]
        self.best_score = float(m.get("best_score", -1.0))
        self.best_epoch = m.get("best_epoch", -1)
        self.keep_epoch = int(m.get("keep_epoch", 0))
        self.history = list(m.get("history", []))
        self.epoch_sums = dict(m.get("epoch_sums", {}))
        self._sums = None
        self.epoch_count = int(m.get("epoch_count", 0))
        restore_rng_state(ckpt["rng"])
        if self.ctx.distributed and self.ctx.rank:
            # every rank had its own dropout stream; derive a distinct one from rank 0's state
            torch.manual_seed(self.seed + 7919 * self.ctx.rank + self.iteration)
        if self.log is not None:
            self.log.restore(self.history, self.iteration)

    # --- validation ------------------------------------------------------------------------
    def _validate(self, epoch_label: float) -> dict[str, float]:
        """Every process validates its shard; rank 0's numbers (the same on every rank, summed
        counts) are broadcast anyway, so the best/early-stopping decisions cannot diverge."""
        with preserved_rng():
            result = dict(self.spec.validate(self.plain_model, self.ctx))
        result = broadcast_object(result, self.ctx)
        score = float(result["score"])
        if score > self.best_score:
            self.best_score, self.best_epoch = score, epoch_label
            self.keep_epoch = 0
            self.save(self.best_path)
        return result

    # --- the loop --------------------------------------------------------------------------
    def fit(self, resume: str | Path | None = None,
            stop_at_iteration: int | None = None) -> StageResult:
        """Train until the last epoch, early stopping, a signal, or ``stop_at_iteration``."""
        if resume is not None:
            self.resume(resume)
        start = time.time()
        interrupted = False
        # The batches come from the project's datasets, which build valid 0/1/255 labels: the
        # model skips its per-call value checks (host syncs) for the engine's steps only.
        nets = {id(m): m for m in (self.plain_model, unwrap_model(self.model))}.values()
        trusted = [(net, net.trusted_inputs) for net in nets if hasattr(net, "trusted_inputs")]
        for net, _ in trusted:
            net.trusted_inputs = True
        try:
            interrupted = self._fit_epochs(stop_at_iteration)
        finally:
            for net, value in trusted:
                net.trusted_inputs = value
        if self.log is not None:
            self.log.close()
        barrier(self.ctx)
        return StageResult(self.best_score, self.best_epoch, self.epoch, self.iteration,
                           interrupted, self.last_path, self.best_path, time.time() - start)

    def _fit_epochs(self, stop_at_iteration: int | None) -> bool:
        """The epoch loop of ``fit``; returns True if training was interrupted."""
        interrupted = False
        with _StopFlag() as stop:
            for epoch in range(self.epoch, self.recipe.epochs):
                start_batch = self.iteration - epoch * self.iters_per_epoch
                if start_batch == 0:
                    if self.keep_epoch >= self.recipe.stop_interval:
                        break
                    self.keep_epoch += 1
                    seed_all(self.seed + epoch + 7919 * self.ctx.rank)
                    self.epoch_sums, self.epoch_count, self._sums = {}, 0, None
                interrupted = self._train_epoch(epoch, start_batch, stop, stop_at_iteration)
                if interrupted:
                    break
                self.epoch = epoch + 1
                record = self._end_epoch(epoch)
                self.history.append(record)
                if self.log is not None:
                    self.log.log_epoch(record)
                self.save(self.last_path)
        return interrupted

    def _train_epoch(self, epoch: int, start_batch: int, stop: _StopFlag,
                     stop_at_iteration: int | None) -> bool:
        """One (possibly partial) epoch; returns True if training must stop now."""
        self.sampler.set_epoch(epoch, start_batch)
        self.spec.train_mode(self.model)
        bar = None
        if self.progress:
            bar = tqdm(total=self.iters_per_epoch, initial=start_batch, leave=False,
                       desc=f"{self.spec.name} {epoch + 1}/{self.recipe.epochs}", unit="it")
        half = round(self.iters_per_epoch / 2)
        try:
            micro_batches = _grouped(self.loader, self.plan.micro_steps)
            for i, group in enumerate(micro_batches, start=start_batch):
                self.iteration += 1
                lrs = self.schedule.apply(self.optimizer, self.iteration)
                step_losses = self._train_step(group)
                self.epoch_count += 1
                if bar is not None:
                    bar.update(1)
                if self.iteration % self.log_every == 0:
                    values = self._check_finite(step_losses)
                    if bar is not None:
                        bar.set_postfix(loss=f"{values['loss']:.3f}", lr=f"{max(lrs):.2e}")
                    if self.log is not None:
                        self.log.log_iteration({"iteration": self.iteration, "epoch": epoch + 1,
                                                "loss": values["loss"], "lr": max(lrs)})
                if (self.recipe.half_epoch_val and self.recipe.epochs <= 100 and epoch > 0
                        and i == half):
                    self._validate(epoch + 0.5)
                    self.spec.train_mode(self.model)

                if self._should_stop(stop, stop_at_iteration):
                    self.save(self.last_path)
                    return True
                if self.checkpoint_every and self.iteration % self.checkpoint_every == 0:
                    self.save(self.last_path)
        finally:
            if bar is not None:
                bar.close()
        return False

    def _train_step(self, micro_batches: Sequence[Any]) -> torch.Tensor:
        """One optimizer step on this rank's micro-batches of the global batch.

        Each micro-batch's loss is scaled by its :class:`BatchPlan` weight, so the accumulated
        (and, under DDP, rank-averaged) gradient is the global batch's mean. DDP reduces the
        gradients once, after the last micro-step (``no_sync`` before). Returns this rank's
        weighted loss parts, stacked and detached (their all-rank mean is the batch's).
        """
        self.optimizer.zero_grad(set_to_none=True)
        last = len(micro_batches) - 1
        total: dict[str, torch.Tensor] = {}
        for j, batch in enumerate(micro_batches):
            batch = to_device(batch, self.ctx.device, self.channels_last)
            weight = self._weights[j]
            sync = j == last or self._ddp is None
            with contextlib.nullcontext() if sync else self._ddp.no_sync():
                with autocast(self.ctx.device, self.amp):
                    out = self.spec.step(self.model, batch)
                self.scaler.scale(out.loss * weight).backward()
            for key, value in {"loss": out.loss, **out.parts}.items():
                part = value.detach() * weight
                total[key] = total[key] + part if key in total else part
        self.scaler.step(self.optimizer)
        self.scaler.update()
        # Loss parts are summed on the device; the host reads them (one sync) only at log
        # points and at the epoch's end, not once per part per step.
        return self._accumulate(total)

    def _should_stop(self, stop: _StopFlag, stop_at_iteration: int | None) -> bool:
        """Stop now? ``stop_at_iteration`` is the same on every rank; a signal may reach only
        some ranks, so under DDP they agree on it at log points only: the agreement is a
        collective read on the host (a device sync under NCCL), which every step would pay.
        A signal therefore takes effect within ``log_every`` iterations under DDP."""
        if stop_at_iteration is not None and self.iteration >= stop_at_iteration:
            return True
        if not self.ctx.distributed:
            return stop.requested
        if self.iteration % self.log_every:
            return False
        device = self.ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
        t = torch.tensor([int(stop.requested)], device=device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return bool(t.item())

    def _end_epoch(self, epoch: int) -> dict[str, Any]:
        """Validate, update best/early-stopping state, and build the epoch's log record."""
        self._check_finite()
        n = max(self.epoch_count, 1)
        record: dict[str, Any] = {"epoch": epoch + 1, "iteration": self.iteration,
                                  "lr": max(self.schedule.group_lrs(self.iteration,
                                                                    len(self.optimizer.param_groups)))}
        for k, v in self.epoch_sums.items():
            record[k] = all_reduce_mean(v / n, self.ctx)
        t0 = time.time()
        result = self._validate(float(epoch))
        record.update({f"val_{k}" if k != "score" else "val_miou": v for k, v in result.items()})
        record["val_seconds"] = round(time.time() - t0, 2)
        record["best_miou"] = self.best_score
        record["best_epoch"] = self.best_epoch
        if self.ctx.is_main:
            message = (f"[{self.spec.name}] epoch {epoch + 1}/{self.recipe.epochs}  "
                       f"loss {record.get('loss', float('nan')):.4f}  "
                       f"val mIoU {100 * record['val_miou']:.2f}  "
                       f"best {100 * self.best_score:.2f} (epoch {self.best_epoch})")
            if self.progress:
                tqdm.write(message)
            else:
                print(message, flush=True)
        return record

    # --- export ----------------------------------------------------------------------------
    def export(self, path: str | Path, metrics: Mapping[str, Any] | None = None) -> Path | None:
        """Write the best weights (or the current ones if no best yet) as a small export file."""
        if not self.ctx.is_main:
            return None
        state = (load_checkpoint(self.best_path)["state_dict"] if self.best_path.is_file()
                 else self.plain_model.state_dict())
        return export_model(path, stage=self.spec.name, model_config=self.spec.model_config,
                            state_dict=state, metrics=metrics or self._metrics(),
                            config=self.config)


def _grouped(items: Any, size: int) -> Iterator[list[Any]]:
    """Consecutive lists of ``size`` items of an iterable (the micro-batches of one step)."""
    group: list[Any] = []
    for item in items:
        group.append(item)
        if len(group) == size:
            yield group
            group = []


def parameters_of(modules: Sequence[nn.Module]) -> list[nn.Parameter]:
    """Trainable parameters of ``modules`` in registration order."""
    return [p for m in modules for p in m.parameters() if p.requires_grad]
