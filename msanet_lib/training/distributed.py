"""One training command for a laptop CPU, one GPU, or many GPUs on many machines.

``torchrun --nproc_per_node=N -m msanet_lib.training ...`` sets ``RANK``, ``WORLD_SIZE``,
``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``; :func:`init_distributed` reads them
(``env://``) and picks NCCL on CUDA, gloo otherwise. Without them the run is a single process.

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


class EpochBatchSampler(Sampler[list[tuple[int, int]]]):
    """Per-rank batches of ``(epoch, index)`` keys; the order depends only on ``(seed, epoch)``.

    Each epoch: one permutation of ``range(num_samples)`` from ``torch.Generator`` seeded with
    ``seed + epoch``, optionally cut to its first ``samples_per_epoch`` (a fresh random subset
    every epoch, for short runs), truncated to whole global batches (``drop_last``, as the
    authors), cut into global batches of ``global_batch_size``; this rank receives the
    ``rank``-th contiguous slice of ``global_batch_size // world_size`` keys of each.
    :meth:`set_epoch` selects the epoch and the first batch to yield (to resume mid-epoch
    without touching the skipped samples).
    """

    def __init__(self, num_samples: int, global_batch_size: int, seed: int,
                 rank: int = 0, world_size: int = 1, shuffle: bool = True,
                 samples_per_epoch: int | None = None) -> None:
        if global_batch_size % world_size:
            raise ValueError(f"batch_size={global_batch_size} must be divisible by the number of "
                             f"processes ({world_size}); change the config's batch_size.")
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
        self.local_batch_size = global_batch_size // world_size
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        self.shuffle = shuffle
        self.epoch = 0
        self.start_batch = 0

    def set_epoch(self, epoch: int, start_batch: int = 0) -> None:
        self.epoch = epoch
        self.start_batch = start_batch

    def batches_per_epoch(self) -> int:
        return self.epoch_samples // self.global_batch_size

    def epoch_order(self, epoch: int) -> Sequence[int]:
        """The global sample order of ``epoch`` (same on every rank)."""
        if not self.shuffle:
            return list(range(self.epoch_samples))
        gen = torch.Generator().manual_seed(self.seed + epoch)
        return torch.randperm(self.num_samples, generator=gen)[: self.epoch_samples].tolist()

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        order = self.epoch_order(self.epoch)
        lo = self.rank * self.local_batch_size
        for b in range(self.start_batch, self.batches_per_epoch()):
            batch = order[b * self.global_batch_size:(b + 1) * self.global_batch_size]
            yield [(self.epoch, i) for i in batch[lo:lo + self.local_batch_size]]

    def __len__(self) -> int:
        return self.batches_per_epoch() - self.start_batch
