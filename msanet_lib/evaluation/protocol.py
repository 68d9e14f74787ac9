"""The authors' test protocol (BAM's and MSANet's ``test.py``).

For each seed (default the five of BAM/MSANet's ``test.py``: 510, 365, 382, 322, 988):

1. seed Python, NumPy and torch, then run ``episodes`` (default 1000) episodes whose queries
   walk the validation list **in order**, cycling when it is shorter (each PASCAL query is
   used 2-3 times; on COCO only the first 1000 images of the list ever act as queries);
2. predict with an evaluation copy of the model (eval mode, BatchNorm folded into the
   convolutions, factorised base learner, channels_last on CPU; the same function up to float
   rounding: :func:`msanet_lib.model.inference.prepare_for_inference`);
3. resize the logits **to the original label resolution**: with ``L = max(h0, w0)`` of the
   query's original label, bilinearly (``align_corners=True``) to ``L x L``; the target is
   the original binary label in the top-left corner of an ``L x L`` canvas filled with 255
   (so the padding added by the val transform is ignored); take the argmax;
4. accumulate class-wise IoU, FB-IoU and pIoU (:mod:`msanet_lib.evaluation.metrics`) for
   ``final_out``, the same for ``meta_out`` (the "_m" metrics), and the base learner's
   mIoU over base classes when the model has one (at the original resolution if the
   dataset gives ``query_raw_base_label``, as the authors; otherwise against
   ``query_base_label`` at the input resolution, a cheaper approximation).

The mean and the best over seeds are reported, as the authors print ``Mean_`` and ``Best_``.

Episodes are batched (``batch_size``) for speed; the per-episode resize to different
``L`` is done for the whole batch at once with one ``grid_sample`` whose sampling grid is
scaled per episode, which equals ``F.interpolate(..., align_corners=True)`` episode by
episode.

Randomness. Each seed first seeds Python, NumPy and torch (as the authors' ``setup_seed``).
A dataset with its own per-episode generators (``msanet_lib.data.datasets.FewShotDataset``,
whose episode ``i`` draws from ``(seed, epoch, i)``) exposes ``seed`` and ``episodes``
attributes: ``evaluate`` sets them for each seed (so indices past the query list draw new
classes and supports, like the authors' later passes) and restores them afterwards. Its
episodes are then identical for any ``batch_size`` and worker count. Datasets drawing from
the global generators are deterministic with ``num_workers=0``. (The authors' episodes come
from the global ``random`` module inside DataLoader workers and cannot be replayed exactly.)

Reusing work. ``feature_cache_bytes > 0`` encodes each image once and keeps its backbone
features in a least-recently-used cache of that many bytes, shared by all seeds
(:mod:`msanet_lib.evaluation.cached_encoder`): the backbone is frozen and sees every image
unmasked, so the features do not depend on the episode. The scores are identical to an
uncached run (bit for bit on the CPU in channels_last; see that module for why and for the
GPU). Off by default.

Several processes. ``shard=(rank, world_size)`` (validation during multi-GPU training) cuts the
walk into the batches one process would run and gives process ``rank`` every
``world_size``-th of them (:func:`rank_batches`); the integer counts are then summed over the
processes. Every episode is computed in the same batch as on one process, so the scores equal
a one-process run exactly (with a dataset that draws episodes from ``(seed, epoch, index)``).
"""

from __future__ import annotations

import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from msanet_lib.evaluation.cached_encoder import CachedEncoder, EpisodeImages
from msanet_lib.evaluation.feature_cache import FeatureCache
from msanet_lib.evaluation.metrics import FewShotIoU, MultiClassIoU
from msanet_lib.model.inference import prepare_for_inference
from msanet_lib.runtime import AMP_DTYPES, IGNORE_LABEL, autocast, seed_all

SEEDS: tuple[int, ...] = (510, 365, 382, 322, 988)
"""``np.random.randint(0, 1000, 5)`` after ``seed(123)``: the seeds of BAM/MSANet test.py."""
EPISODES = 1000
_CLASS_LIST_ATTRS = ("novel_classes", "val_classes", "class_ids", "classes")


# --------------------------------------------------------------------------- batching


def _canvas(labels: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
    """Original labels -> (B, Lmax, Lmax) int64 canvas filled with 255 and sides L (B,)."""
    sides = torch.tensor([max(lab.shape[-2:]) for lab in labels], dtype=torch.int64)
    side = int(sides.max())
    canvas = torch.stack(
        [
            F.pad(lab.long(), (0, side - lab.shape[-1], 0, side - lab.shape[-2]),
                  value=IGNORE_LABEL)
            for lab in labels
        ]
    )
    return canvas, sides


def collate_for_eval(items: list[dict[str, Any]]) -> dict[str, Any]:
    """Batches episode dicts; original-resolution labels go onto an L x L canvas.

    Tensors of equal shape are stacked, ints become a (B,) tensor, anything else a list.
    ``query_raw_label`` (h0, w0) of each episode becomes ``raw_target`` (B, Lmax, Lmax)
    (label top-left, 255 elsewhere) and ``raw_side`` (B,) = max(h0, w0); likewise
    ``query_raw_base_label`` -> ``raw_base_target`` when the dataset provides it.
    """
    if not items:
        raise ValueError("collate_for_eval got an empty batch")
    out: dict[str, Any] = {}
    for key in items[0]:
        values = [item[key] for item in items]
        if key == "query_raw_label":
            out["raw_target"], out["raw_side"] = _canvas(values)
        elif key == "query_raw_base_label":
            out["raw_base_target"], _ = _canvas(values)
        elif all(isinstance(v, Tensor) for v in values) and len({v.shape for v in values}) == 1:
            out[key] = torch.stack(values)
        elif all(isinstance(v, int | np.integer) for v in values):
            out[key] = torch.tensor([int(v) for v in values])
        else:
            out[key] = values
    return out


def resize_to_sides(logits: Tensor, sides: Tensor, size: int) -> Tensor:
    """Resizes episode b of ``logits`` to ``sides[b] x sides[b]``, batched.

    Args:
        logits: (B, C, H, W) scores at the network's input size.
        sides: (B,) target side L_b of each episode.
        size: side of the output canvas, ``>= sides.max()``.

    Returns:
        (B, C, size, size) float32: the top-left ``L_b x L_b`` of episode b equals
        ``F.interpolate(logits[b:b+1], (L_b, L_b), mode="bilinear", align_corners=True)``;
        the rest repeats the border (it lies on 255 target pixels and is never scored).
    """
    b = logits.shape[0]
    logits = logits.float()
    pos = torch.arange(size, device=logits.device, dtype=torch.float64)
    denom = (sides.to(logits.device, torch.float64) - 1).clamp_min(1).view(b, 1)
    # align_corners=True: output pixel j sits at input coordinate j * (in - 1) / (L - 1),
    # i.e. at normalised grid coordinate -1 + 2 j / (L - 1).
    coords = (-1 + 2 * pos.view(1, size) / denom).to(logits.dtype)  # (B, size)
    grid = torch.stack(
        (
            coords.view(b, 1, size).expand(b, size, size),  # x varies along the width
            coords.view(b, size, 1).expand(b, size, size),  # y along the height
        ),
        dim=-1,
    )
    return F.grid_sample(logits, grid, mode="bilinear", padding_mode="border", align_corners=True)


class CyclicSampler(Sampler[int]):
    """Indices ``0, 1, ..., n-1, 0, 1, ...`` until ``episodes`` are drawn (the val-list walk)."""

    def __init__(self, n: int, episodes: int) -> None:
        if n < 1:
            raise ValueError("the evaluation dataset is empty: check the fold's val list")
        self.n, self.episodes = n, episodes

    def __iter__(self) -> Iterator[int]:
        return (i % self.n for i in range(self.episodes))

    def __len__(self) -> int:
        return self.episodes


def rank_batches(order: Sequence[int], batch_size: int, rank: int = 0,
                 world_size: int = 1) -> list[list[int]]:
    """Process ``rank``'s share of a walk over ``order``: batch ``b`` goes to ``b % world_size``.

    ``order`` is cut into consecutive batches of ``batch_size`` (the last may be shorter),
    exactly the batches one process runs; whole batches are dealt round-robin, so an item's
    batch (and so its arithmetic) does not depend on the process count, and the processes'
    shares differ by at most one batch.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank={rank} must lie in 0..world_size-1 (world_size={world_size})")
    order = list(order)
    starts = range(rank * batch_size, len(order), world_size * batch_size)
    return [order[s:s + batch_size] for s in starts]


# --------------------------------------------------------------------------- results


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, list):
        return [_nan_to_none(v) for v in value]
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    return value


@dataclass
class SeedResult:
    """Scores of one seed. IoUs are fractions in [0, 1]; NaN = class never appeared."""

    seed: int
    class_ids: list[int]
    class_iou: list[float]
    miou: float
    fb_iou: float
    piou: float
    class_iou_meta: list[float]
    miou_meta: float
    fb_iou_meta: float
    miou_base: float | None
    missing_classes: list[int]
    episodes: int
    seconds: float


def _pct(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{100 * value:.2f}"


@dataclass
class EvalResult:
    """All seeds of one evaluation, with the mean and best over seeds."""

    seeds: list[SeedResult]
    episodes: int
    fold: int | None = None
    shots: int | None = None
    benchmark: str | None = None
    info: dict[str, Any] = field(default_factory=dict)

    def _values(self, name: str) -> list[float]:
        return [v for s in self.seeds if (v := getattr(s, name)) is not None and not math.isnan(v)]

    def mean(self, name: str = "miou") -> float:
        """Mean over seeds of a :class:`SeedResult` field (``miou``, ``fb_iou``, ...)."""
        values = self._values(name)
        return sum(values) / len(values) if values else math.nan

    def best(self, name: str = "miou") -> float:
        """Best (max) over seeds, as the authors' ``Best_`` lines."""
        values = self._values(name)
        return max(values) if values else math.nan

    @property
    def mean_miou(self) -> float:
        return self.mean("miou")

    @property
    def best_miou(self) -> float:
        return self.best("miou")

    @property
    def mean_fb_iou(self) -> float:
        return self.mean("fb_iou")

    @property
    def best_fb_iou(self) -> float:
        return self.best("fb_iou")

    def to_markdown(self) -> str:
        """Per-seed table (in %), then Mean and Best rows, then per-class IoU per seed."""
        title = " ".join(
            part
            for part in (
                self.benchmark or "",
                f"fold {self.fold}" if self.fold is not None else "",
                f"{self.shots}-shot" if self.shots is not None else "",
                f"{self.episodes} episodes/seed",
            )
            if part
        )
        cols = ("miou", "fb_iou", "piou", "miou_meta", "fb_iou_meta", "miou_base")
        lines = [
            f"**{title}**",
            "",
            "| seed | mIoU | FB-IoU | pIoU | mIoU_m | FB-IoU_m | mIoU_b |",
            "|---|---|---|---|---|---|---|",
        ]
        for s in self.seeds:
            lines.append(f"| {s.seed} | " + " | ".join(_pct(getattr(s, c)) for c in cols) + " |")
        for label, fn in (("Mean", self.mean), ("Best", self.best)):
            lines.append(f"| **{label}** | " + " | ".join(_pct(fn(c)) for c in cols) + " |")
        if self.seeds:
            ids = self.seeds[0].class_ids
            lines += [
                "",
                "| seed | " + " | ".join(f"class {c}" for c in ids) + " |",
                "|---|" + "---|" * len(ids),
            ]
            for s in self.seeds:
                lines.append(f"| {s.seed} | " + " | ".join(_pct(v) for v in s.class_iou) + " |")
            missing = sorted({c for s in self.seeds for c in s.missing_classes})
            if missing:
                lines += ["", f"Classes with no episode (counted as 0 in mIoU, as the authors' "
                              f"test.py): {missing}"]
        return "\n".join(lines)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN -> None) with per-seed results and mean/best summaries."""
        summary = {
            f"{agg}_{name}": fn(name)
            for name in ("miou", "fb_iou", "piou", "miou_meta", "fb_iou_meta", "miou_base")
            for agg, fn in (("mean", self.mean), ("best", self.best))
        }
        return _nan_to_none(
            {
                "benchmark": self.benchmark,
                "fold": self.fold,
                "shots": self.shots,
                "episodes": self.episodes,
                "info": self.info,
                "summary": summary,
                "seeds": [asdict(s) for s in self.seeds],
            }
        )


# --------------------------------------------------------------------------- protocol


def _fold_class_ids(dataset: Dataset, class_ids: Sequence[int] | None) -> list[int]:
    if class_ids is not None:
        return [int(c) for c in class_ids]
    for attr in _CLASS_LIST_ATTRS:
        value = getattr(dataset, attr, None)
        if value is not None and not callable(value):
            return [int(c) for c in value]
    raise ValueError(
        "cannot tell the fold's novel classes: pass class_ids=[...] (dataset class ids in the "
        f"order of the episodes' class_index), or give the dataset one of {_CLASS_LIST_ATTRS}"
    )


def _score(logits: Tensor, target: Tensor, sides: Tensor) -> Tensor:
    """Argmax of ``logits`` resized to each episode's L x L (matching ``target``)."""
    return resize_to_sides(logits, sides, target.shape[-1]).argmax(dim=1)


def evaluate(
    model: nn.Module,
    dataset: Dataset,
    episodes: int = EPISODES,
    seeds: Sequence[int] = SEEDS,
    device: str | torch.device | None = None,
    amp: str | None = None,
    *,
    channels_last: bool | None = None,
    fold_bn: bool = True,
    factorise_base_learner: bool = True,
    batch_size: int = 1,
    num_workers: int = 0,
    class_ids: Sequence[int] | None = None,
    progress: bool = True,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]] = collate_for_eval,
    shard: tuple[int, int] = (0, 1),
    feature_cache_bytes: int = 0,
    support_layer4_box: bool | None = None,
) -> EvalResult:
    """Runs the authors' few-shot test protocol (see the module docstring).

    Args:
        model: an :class:`~msanet_lib.model.msanet.MSANet` (or any module with the same
            eval forward ``model(x, s_x, s_y) -> (final_out, meta_out, base_out)``).
        dataset: a fold's validation episodes (``FewShotDataset(split="val")``); each item
            needs ``query_img``, ``support_imgs``, ``support_masks``, ``class_index`` and
            ``query_raw_label`` (original-resolution 0/1/255 label).
        episodes: episodes per seed (1000 in the paper).
        seeds: one full evaluation per seed.
        device: where to run (default: the model's device).
        amp: ``None`` or ``"bf16"`` (autocast; the metrics stay in float32). The evaluation
            copy then stores its convolution weights in that dtype (autocast would cast them
            at every call).
        channels_last: run a channels_last copy of the model on channels_last query images;
            ``None`` (default) = on CPU only, where it is measured faster
            (``scripts/benchmark.py``).
        fold_bn: run a copy with every frozen BatchNorm folded into its convolution
            (:func:`msanet_lib.model.inference.prepare_for_inference`); same outputs up to
            float rounding. The model passed in is never modified either way.
        factorise_base_learner: in that copy, run the base learner's first convolution on the
            pooled PPM branches before upsampling them (half its cost, same outputs up to
            float rounding; :class:`~msanet_lib.modules.base_learner.FactorisedBaseLearner`).
        batch_size: episodes per forward pass; results do not depend on it.
        class_ids: the fold's novel class ids in ``class_index`` order (default: read from
            the dataset's ``novel_classes``/``class_ids`` attribute).
        shard: ``(rank, world_size)``: this process runs its share of the episodes
            (:func:`rank_batches`) and the counts are summed over the ``torch.distributed``
            group, which every process of it must enter with the same arguments. Every
            process returns the full result.
        feature_cache_bytes: encode each image once and reuse its backbone features from a
            least-recently-used cache of at most this many bytes (on ``device``), kept across
            the seeds; 0 (default) = off. Same scores as without it
            (:mod:`~msanet_lib.evaluation.cached_encoder`); needs an MSANet and a val
            ``FewShotDataset``. Its counters land in ``info["feature_cache"]``.
        support_layer4_box: in that copy, compute the supports' layer4 only on the box their
            masks reach (:mod:`~msanet_lib.model.support_region`; same outputs up to float
            rounding); None = where it pays (``prepare_for_inference``). Off with the feature
            cache, which stores whole-image features: a cached run then equals the uncached
            run with ``support_layer4_box=False`` bit for bit.

    Returns:
        :class:`EvalResult` with one :class:`SeedResult` per seed.
    """
    if episodes < 1:
        raise ValueError(f"episodes must be >= 1, got {episodes}")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if not seeds:
        raise ValueError("seeds is empty: pass at least one seed")
    if feature_cache_bytes < 0:
        raise ValueError(f"feature_cache_bytes must be 0 (off) or more, got {feature_cache_bytes}")
    rank, world_size = shard
    if not 0 <= rank < world_size:
        raise ValueError(f"shard={shard}: expected (rank, world_size) with 0 <= rank < world_size")
    if world_size > 1 and not (torch.distributed.is_available()
                               and torch.distributed.is_initialized()):
        raise ValueError(f"shard={shard} sums the counts over a torch.distributed process group, "
                         "and none is initialised: start the processes with torchrun or pass "
                         "shard=(0, 1)")
    ids = _fold_class_ids(dataset, class_ids)
    if device is None:
        first = next(model.parameters(), None)
        device = first.device if first is not None else torch.device("cpu")
    device = torch.device(device)
    if channels_last is None:
        channels_last = device.type == "cpu"
    # A prepared copy: the caller's model (often the one being trained) keeps its weights,
    # memory format, device and mode.
    autocast(device, amp)  # checks ``amp`` before any work
    model = prepare_for_inference(
        model, fold_bn=fold_bn, channels_last=channels_last,
        factorise_base_learner=factorise_base_learner,
        support_layer4_box=support_layer4_box if feature_cache_bytes == 0 else False,
        autocast_dtype=None if amp in (None, "none") else AMP_DTYPES[amp]).to(device)
    cached: tuple[CachedEncoder, EpisodeImages] | None = None
    if feature_cache_bytes > 0:
        # One cache for this model, shared by the seeds; keyed per precision.
        cached = (CachedEncoder(model, FeatureCache(feature_cache_bytes)),
                  EpisodeImages(dataset, "float32" if amp in (None, "none") else str(amp)))
    results = []
    # Datasets with per-episode generators (FewShotDataset: rng from (seed, epoch, index))
    # take the seed and the episode count as attributes; they are restored afterwards.
    saved = {k: getattr(dataset, k) for k in ("seed", "episodes") if hasattr(dataset, k)}
    try:
        for seed in seeds:
            results.append(
                _evaluate_seed(model, dataset, int(seed), episodes, ids, device, amp,
                               channels_last, batch_size, num_workers, progress and rank == 0,
                               collate_fn, (rank, world_size), cached)
            )
    finally:
        for key, value in saved.items():
            setattr(dataset, key, value)
    return EvalResult(
        seeds=results,
        episodes=episodes,
        fold=getattr(dataset, "fold", None),
        shots=getattr(dataset, "shots", None),
        benchmark=getattr(dataset, "benchmark", None),
        info={"device": str(device), "amp": amp, "batch_size": batch_size,
              "channels_last": channels_last, "fold_bn": fold_bn,
              "factorise_base_learner": factorise_base_learner,
              "feature_cache": None if cached is None else cached[0].cache.stats.to_dict()},
    )


def _evaluate_seed(
    model: nn.Module,
    dataset: Dataset,
    seed: int,
    episodes: int,
    ids: list[int],
    device: torch.device,
    amp: str | None,
    channels_last: bool,
    batch_size: int,
    num_workers: int,
    progress: bool,
    collate_fn: Callable[[list[dict[str, Any]]], dict[str, Any]],
    shard: tuple[int, int] = (0, 1),
    cached: tuple[CachedEncoder, EpisodeImages] | None = None,
) -> SeedResult:
    """One seed of :func:`evaluate` (this process's ``shard`` of it, counts summed)."""
    seed_all(seed)
    if hasattr(dataset, "seed"):
        dataset.seed = seed
    if hasattr(dataset, "episodes"):
        # Later passes over the query list then draw new classes and supports.
        dataset.episodes = episodes
    walk = CyclicSampler(len(dataset), episodes)  # type: ignore[arg-type]
    loader = DataLoader(
        dataset,
        batch_sampler=rank_batches(walk, batch_size, *shard),
        num_workers=num_workers,
        collate_fn=collate_fn,
        # page-locked batches let the host-to-GPU copies overlap the forward
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(int(seed)),
    )
    final, meta = FewShotIoU(ids), FewShotIoU(ids)
    base: MultiClassIoU | None = None
    start = time.perf_counter()
    bar = tqdm(loader, desc=f"seed {seed}", disable=not progress, leave=False)
    with torch.inference_mode():
        for batch in bar:
            if "raw_target" not in batch:
                raise ValueError(
                    "the dataset's episodes lack 'query_raw_label' (the original-resolution "
                    "label the protocol scores against); build it with split='val'"
                )
            x = batch["query_img"].to(device, non_blocking=True)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            s_x = batch["support_imgs"].to(device, non_blocking=True)
            s_y = batch["support_masks"].to(device, non_blocking=True)
            with autocast(device, amp):
                if cached is None:
                    out = model(x, s_x, s_y)
                else:  # the backbone only on images not seen before, the rest as usual
                    encoder, images = cached
                    encoding = encoder.encode(x, s_x, images.keys(batch))
                    out = model(x, s_x, s_y, encoding=encoding)
            final_out, meta_out, base_out = out[0], out[1], out[2]
            target = batch["raw_target"].to(device)
            sides = batch["raw_side"]
            cls = batch["class_index"]
            final.update(_score(final_out, target, sides), target, cls)
            meta.update(_score(meta_out, target, sides), target, cls)
            if base_out is not None:
                base = base or MultiClassIoU(base_out.shape[1])
                if "raw_base_target" in batch:
                    base_target = batch["raw_base_target"].to(device)
                    base.update(_score(base_out, base_target, sides), base_target)
                elif "query_base_label" in batch:
                    # Without the original base label, score at the input resolution.
                    base.update(base_out.argmax(1), batch["query_base_label"].to(device))
    if shard[1] > 1:
        final.all_reduce(device)
        meta.all_reduce(device)
        # A process whose share was empty never saw base_out: agree on the class count first,
        # so that every process enters the same collectives.
        where = device if torch.distributed.get_backend() == "nccl" else torch.device("cpu")
        largest = torch.tensor([0 if base is None else base.num_classes], device=where)
        torch.distributed.all_reduce(largest, op=torch.distributed.ReduceOp.MAX)
        num_base = int(largest.item())
        if num_base:
            base = base or MultiClassIoU(num_base)
            base.all_reduce(device)
    if final.missing_classes and shard[0] == 0:
        warnings.warn(f"seed {seed}: classes {final.missing_classes} had no episode; they count "
                      "as 0 in mIoU as in the authors' test.py (raise --episodes)", stacklevel=2)
    return SeedResult(
        seed=seed,
        class_ids=ids,
        class_iou=final.class_iou,
        miou=final.miou,
        fb_iou=final.fb_iou,
        piou=final.piou,
        class_iou_meta=meta.class_iou,
        miou_meta=meta.miou,
        fb_iou_meta=meta.fb_iou,
        miou_base=None if base is None else base.miou,
        missing_classes=final.missing_classes,
        episodes=final.episodes,
        seconds=time.perf_counter() - start,
    )
