"""One training command for a laptop CPU, one GPU, or many GPUs on many machines.

``torchrun --nproc_per_node=N -m msanet_lib.training ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them
(``env://``) and picks NCCL on CUDA, gloo otherwise. Without them the run is a single process.

Any process count trains the configured global batch: :func:`plan_batches` shares it out in
chunks that differ by at most one sample, optionally over several accumulated micro-steps per
process (``runtime.micro_batch_size``), and weights each chunk's loss by its size
(:class:`BatchPlan`), so the update is the one-process update of the same batch.

Data order is a pure function of ``(seed, epoch)``: :class:`EpochBatchSampler` draws one
permutation of the dataset per epoch, cuts it into *global* batches and gives rank ``r`` the
``r``-th contiguous slice of each one. Every sample's augmentation is seeded from
``(seed, epoch, index)`` by :class:`SeededDataset`, so which process or worker loads it does not
matter. Together they make a run on 1 process and on N processes see the same global batches,
and make a resumed run see exactly the batches an uninterrupted one would have.
"""

from __future__ import annotations

import datetime
import gc
import os
import random
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch.utils.data import Dataset, Sampler, Subset

from msanet_lib.runtime import select_device


@dataclass(frozen=True)
class DistContext:
    """Who this process is in the job, and which device it uses."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Only the main process (rank 0) logs and writes checkpoints (all of them validate)."""
        return self.rank == 0


def init_distributed(device_preference: str = "auto",
                     timeout_minutes: float = 30.0) -> DistContext:
    """Join the torchrun job described by the environment, or run as a single process.

    ``timeout_minutes`` bounds how long a collective waits for the other ranks (NCCL's own
    default is 10 min, shorter than a validation of rank 0 on a large benchmark);
    ``runtime.dist_timeout_minutes`` in the config.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    device = select_device(device_preference, local_rank)
    if world_size > 1 and not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://",
                                rank=rank, world_size=world_size,
                                timeout=datetime.timedelta(minutes=timeout_minutes))
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def cleanup_distributed() -> None:
    """Leave the process group together with the other ranks.

    Objects that still hold the group (a DDP wrapper in a reference cycle, its reducer) are
    collected first, and every rank waits for the others before the group is destroyed: a rank
    that tears down while another still uses the group's threads or rank 0's store aborts
    with "terminate called without an active exception" (seen with gloo, torch 2.14).
    """
    if dist.is_available() and dist.is_initialized():
        gc.collect()
        dist.barrier()
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.distributed:
        dist.barrier()


def broadcast_object(obj: Any, ctx: DistContext) -> Any:
    """Rank 0's ``obj`` on every rank (e.g. the validation result that decides early stopping)."""
    if not ctx.distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def all_reduce_mean_tensor(tensor: torch.Tensor, ctx: DistContext) -> torch.Tensor:
    """The mean of ``tensor`` over all ranks (a copy; ``tensor`` itself is unchanged)."""
    if not ctx.distributed:
        return tensor
    backend_device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    out = tensor.detach().to(backend_device, copy=True)
    dist.all_reduce(out)
    return out / ctx.world_size


def all_reduce_mean(value: float, ctx: DistContext) -> float:
    """Average of a Python number over all ranks (for logging the global loss)."""
    if not ctx.distributed:
        return value
    backend_device = ctx.device if dist.get_backend() == "nccl" else torch.device("cpu")
    tensor = torch.tensor([float(value)], dtype=torch.float64, device=backend_device)
    dist.all_reduce(tensor)
    return float(tensor.item()) / ctx.world_size


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A well-mixed 32-bit seed for one sample of one epoch (independent of process/worker)."""
    return int(np.random.SeedSequence([seed, epoch, index]).generate_state(1)[0])


class SeededDataset(Dataset):
    """Wrap a map-style dataset so item ``(epoch, index)`` is drawn with a fixed seed.

    Datasets with ``set_epoch`` (:mod:`msanet_lib.data` draws every item from its own
    generator ``(seed, epoch, index)``) are told the epoch in the process that builds the item,
    so persistent DataLoader workers follow the epoch too. For any other dataset, the global
    ``random``, ``numpy.random`` and ``torch`` generators are seeded with :func:`sample_seed`
    for the call. Either way the global streams are restored afterwards, so data loading
    neither depends on nor disturbs the training process's own random stream (dropout).
    """

    def __init__(self, dataset: Dataset, seed: int) -> None:
        self.dataset = dataset
        self.seed = seed
        inner = dataset
        while isinstance(inner, Subset):
            inner = inner.dataset
        self._epoch_target = inner if hasattr(inner, "set_epoch") else None

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, key: tuple[int, int]) -> Any:
        epoch, index = key
        if self._epoch_target is not None:
            self._epoch_target.set_epoch(epoch)
        s = sample_seed(self.seed, epoch, index)
        py_state = random.getstate()
        np_state = np.random.get_state()  # noqa: NPY002 (global stream on purpose)
        try:
            with torch.random.fork_rng(devices=[]):
                random.seed(s)
                np.random.seed(s)  # noqa: NPY002
                torch.manual_seed(s)
                return self.dataset[index]
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)  # noqa: NPY002


@dataclass(frozen=True)
class BatchPlan:
    """How one global batch of ``global_batch`` samples is shared out over the processes.

    The batch (in sample order) is cut into ``world_size * micro_steps`` consecutive chunks whose
    sizes differ by at most one; process ``r`` takes chunks ``r*k .. r*k + k-1`` (``k`` =
    ``micro_steps``), one per micro-step, so its share is contiguous. When ``world_size``
    divides the batch and ``k == 1`` this is the usual equal split.

    Exactness. The step's gradient must be that of the mean loss over the whole batch. DDP
    averages the ranks' gradients (divides by ``world_size``) and accumulation adds the
    micro-steps', so the loss of a chunk of ``n`` samples is scaled by
    ``weight = n * world_size / global_batch`` (:meth:`weights`; 1 for an equal split):
    ``sum_c n_c / G * mean_c`` is the batch mean of per-sample losses. BatchNorm layers in
    training mode see micro-batches, not the batch (the authors' 4-GPU runs saw 3 per GPU too).
    """

    global_batch: int
    world_size: int = 1
    micro_steps: int = 1

    def __post_init__(self) -> None:
        if self.global_batch < self.world_size * self.micro_steps:
            raise ValueError(
                f"batch_size={self.global_batch} cannot give each of {self.world_size} "
                f"processes a sample in each of {self.micro_steps} micro-steps; use at most "
                f"{self.global_batch} processes or raise runtime.micro_batch_size.")

    def chunk_sizes(self) -> list[int]:
        """Sizes of the ``world_size * micro_steps`` chunks, in chunk order."""
        count = self.world_size * self.micro_steps
        small, extra = divmod(self.global_batch, count)
        return [small + (c < extra) for c in range(count)]

    def rank_chunks(self, rank: int) -> list[tuple[int, int]]:
        """``(start, stop)`` positions in the global batch of ``rank``'s micro-batches."""
        sizes = self.chunk_sizes()
        starts = [sum(sizes[:c]) for c in range(len(sizes) + 1)]
        first = rank * self.micro_steps
        return [(starts[c], starts[c + 1]) for c in range(first, first + self.micro_steps)]

    def weights(self, rank: int) -> list[float]:
        """Loss scale of each of ``rank``'s micro-steps (see the class docstring)."""
        return [(stop - start) * self.world_size / self.global_batch
                for start, stop in self.rank_chunks(rank)]

    def describe(self) -> str:
        """One line for the run header, e.g. ``global batch 8 = 3 processes x 1 micro-step
        of 2-3 samples``."""
        sizes = self.chunk_sizes()
        lo, hi = min(sizes), max(sizes)
        each = f"{lo}" if lo == hi else f"{lo}-{hi}"
        proc = "process" if self.world_size == 1 else "processes"
        steps = "micro-step" if self.micro_steps == 1 else "accumulated micro-steps"
        note = "" if lo == hi else " (losses weighted by micro-batch size)"
        return (f"global batch {self.global_batch} = {self.world_size} {proc} x "
                f"{self.micro_steps} {steps} of {each} samples{note}")


def plan_batches(global_batch: int, world_size: int = 1,
                 micro_batch_size: int | None = None) -> BatchPlan:
    """The fewest micro-steps that keep every process's micro-batch <= ``micro_batch_size``.

    ``None``: one micro-step (each process forwards its whole share at once). Any process count
    works: when it does not divide the batch, the shares differ by one sample and are weighted
    (:class:`BatchPlan`), so the update is still the configured global batch's.

    Raises:
        ValueError: fewer samples than processes, or a ``micro_batch_size`` so small that some
            process would get no sample in some micro-step (the message gives the smallest
            size that works).
    """
    if world_size < 1:
        raise ValueError(f"world_size={world_size} must be >= 1.")
    if global_batch < world_size:
        raise ValueError(f"batch_size={global_batch} is smaller than the {world_size} "
                         f"processes: each needs a sample per step. Use at most {global_batch} "
                         "processes or raise batch_size.")
    if micro_batch_size is None:
        return BatchPlan(global_batch, world_size, 1)
    if micro_batch_size < 1:
        raise ValueError(f"runtime.micro_batch_size={micro_batch_size} must be >= 1 "
                         "(or null: no accumulation).")
    steps = -(-global_batch // (world_size * micro_batch_size))  # ceil
    if world_size * steps > global_batch:
        smallest = -(-global_batch // (world_size * (global_batch // world_size)))
        raise ValueError(f"batch_size={global_batch} on {world_size} processes cannot be cut "
                         f"into micro-batches of at most {micro_batch_size} without leaving a "
                         f"process idle; set runtime.micro_batch_size >= {smallest}.")
    return BatchPlan(global_batch, world_size, steps)


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Per-rank micro-batches of ``(epoch, index)`` keys; the order depends only on
    ``(seed, epoch)``.

    Each epoch: one permutation of ``range(num_samples)`` from ``torch.Generator`` seeded with
    ``seed + epoch``, optionally cut to its first ``samples_per_epoch`` (a fresh random subset
    every epoch, for short runs), truncated to whole global batches (``drop_last``, as the
    authors), cut into global batches of ``global_batch_size``; for each one this rank receives
    its ``plan.micro_steps`` micro-batches (:class:`BatchPlan`: contiguous, sizes differing by
    at most one over all ranks and micro-steps). :meth:`set_epoch` selects the epoch and the
    first global batch to yield (to resume mid-epoch without touching the skipped samples).
    """

    def __init__(self, num_samples: int, global_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 samples_per_epoch: int | None = None,
                 micro_batch_size: int | None = None) -> None:
        self.plan = plan_batches(global_batch_size, world_size, micro_batch_size)
        if samples_per_epoch is not None and samples_per_epoch < num_samples:
            if samples_per_epoch < 1:
                raise ValueError(f"samples_per_epoch={samples_per_epoch} must be >= 1.")
            used = samples_per_epoch
        else:
            used = num_samples
        if used < global_batch_size:
            raise ValueError(f"An epoch has {used} items, fewer than one batch of "
                             f"{global_batch_size}; lower batch_size or add data.")
        self.num_samples = num_samples
        self.epoch_samples = used
        self.global_batch_size = global_batch_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0
        self._chunks = self.plan.rank_chunks(rank)

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        """Global batches (optimizer steps) per epoch."""
        return self.epoch_samples // self.global_batch_size

    def epoch_order(self, epoch: int) -> Sequence[int]:
        """The global sample order of ``epoch`` (same on every rank)."""
        if not self.shuffle:
            return list(range(self.epoch_samples))
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=gen)[: self.epoch_samples].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch)
        for b in range(self.start_batch, self.batches_per_epoch()):
            batch = order[b * self.global_batch_size:(b + 1) * self.global_batch_size]
            for start, stop in self._chunks:
                yield [(self.epoch, i) for i in batch[start:stop]]

    def __len__(self) -> int:
        """Micro-batches left to yield (``micro_steps`` per global batch)."""
        return (self.batches_per_epoch() - self.start_batch) * self.plan.micro_steps
