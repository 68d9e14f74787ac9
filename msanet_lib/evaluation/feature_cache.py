"""A byte-bounded LRU cache of per-image backbone features, for evaluation.

MSANet's backbone is frozen and sees each image unmasked (the support's layer4 too), so its
output for an image does not depend on the episode the image appears in. The test protocol
(1000 episodes x 5 seeds) meets the same images many times, as queries (the val list is
walked in order, cycled) and as supports, so the features of an image can be computed once and
reused: :mod:`msanet_lib.evaluation.cached_encoder` does that with this cache.

What is cached, per image: :class:`ImageFeatures`, the image's slice of every backbone map
the later stages read, each ``(C, h, w)`` in the dtype the backbone produced (float32, or
bfloat16/float16 under autocast) on the device it ran on. The maps nothing reads are kept
as zero-stride "shape only" tensors (one element of storage), since multi-similarity needs
their size, not their values.

The key (:class:`FeatureKey`) is what fixes the backbone's input and arithmetic exactly: the
image file, the deterministic test transform that turns it into a tensor, and the precision
the backbone ran in. One cache serves one model: :func:`~msanet_lib.evaluation.evaluate`
makes a fresh one for each call.

Memory. The budget counts the bytes of the cached tensors' storage (Python overheads are a
few hundred bytes per image and are not counted). Per image, measured: ResNet-50 at 473 px
in float32 keeps about 258 MB (layer2..layer4 and 13 of the 14 block maps), resnet_toy at
128 px 0.69 MB; bfloat16 halves both. Eviction drops least-recently-used images until a
new one fits; an image larger than the whole budget is not stored.

Why no library: ``functools.lru_cache`` counts entries, not bytes, and cannot be inspected;
``cachetools`` would be a new dependency for some twenty lines around an ``OrderedDict``
(``move_to_end`` on a hit, ``popitem(last=False)`` to evict), which is all an LRU needs.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

from torch import Tensor

MIB = 2**20


@dataclass(frozen=True)
class FeatureKey:
    """What determines the backbone's input and arithmetic for one image.

    Attributes:
        image: the image file as the dataset names it (path relative to the dataset folder).
        transform: the deterministic test transform that made the tensor, spelled out with
            its parameters (e.g. ``"TestResize(473) Normalize(...)"``): the size is part of it.
        precision: ``"float32"`` or the autocast dtype the backbone ran under (``"bf16"``,
            ``"fp16"``): features computed under autocast are other numbers.
    """

    image: str
    transform: str
    precision: str


class ImageFeatures(NamedTuple):
    """One image's backbone outputs, as stored in the cache.

    layers: layer0..layer4 of the image, each (C_i, h_i, w_i); blocks: every residual block's
    output, each (C, h, w). Maps the model does not read are zero-stride views of one element
    (right shape, no storage; see ``MSANet.encoding_reads``).
    """

    layers: tuple[Tensor, ...]
    blocks: tuple[Tensor, ...]

    def nbytes(self) -> int:
        """Bytes of storage the cached tensors hold (shape-only maps count one element)."""
        return sum(t.untyped_storage().nbytes() for t in (*self.layers, *self.blocks))


@dataclass
class CacheStats:
    """Counters of a :class:`FeatureCache` (all since it was made).

    hits / misses: look-ups answered from the cache / not; evictions: images dropped to make
    room; bytes / items: what the cache holds now; peak_bytes: the most it ever held;
    budget_bytes: its limit.
    """

    budget_bytes: int
    hits: int = 0
    misses: int = 0
    evictions: int = 0
    bytes: int = 0
    items: int = 0
    peak_bytes: int = 0

    @property
    def hit_rate(self) -> float:
        """Fraction of look-ups that were hits (0 before any look-up)."""
        total = self.hits + self.misses
        return self.hits / total if total else 0.0

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready counters, with the hit rate."""
        return asdict(self) | {"hit_rate": self.hit_rate}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CacheStats:
        """The counters back from :meth:`to_dict` (the hit rate is recomputed)."""
        return cls(**{k: v for k, v in data.items() if k != "hit_rate"})

    def summary(self) -> str:
        """One line for a log: hits, misses, hit rate, what is held against the budget."""
        return (f"feature cache: {self.hits} hits, {self.misses} misses ({100 * self.hit_rate:.1f}% "
                f"hits), {self.evictions} evictions; holds {self.items} images in "
                f"{self.bytes / MIB:.1f} MiB (peak {self.peak_bytes / MIB:.1f} MiB) of "
                f"{self.budget_bytes / MIB:.0f} MiB")


class FeatureCache:
    """Least-recently-used :class:`ImageFeatures` by :class:`FeatureKey`, within a byte budget.

    Args:
        budget_bytes: the most bytes of tensors held at once; 0 disables the cache (every
            look-up misses, nothing is stored).

    Raises:
        ValueError: a negative budget.
    """

    def __init__(self, budget_bytes: int) -> None:
        if budget_bytes < 0:
            raise ValueError(f"the feature cache budget must be 0 (off) or more bytes, got {budget_bytes}")
        self._entries: OrderedDict[FeatureKey, tuple[ImageFeatures, int]] = OrderedDict()
        self.stats = CacheStats(budget_bytes=int(budget_bytes))

    @property
    def budget_bytes(self) -> int:
        return self.stats.budget_bytes

    @property
    def enabled(self) -> bool:
        return self.stats.budget_bytes > 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: object) -> bool:
        """Membership only: neither the order nor the counters change."""
        return key in self._entries

    def keys(self) -> list[FeatureKey]:
        """The cached keys, least recently used first."""
        return list(self._entries)

    def get(self, key: FeatureKey) -> ImageFeatures | None:
        """The features of ``key`` (now the most recently used), or None; counts a hit or miss."""
        entry = self._entries.get(key)
        if entry is None:
            self.stats.misses += 1
            return None
        self._entries.move_to_end(key)
        self.stats.hits += 1
        return entry[0]

    def put(self, key: FeatureKey, features: ImageFeatures) -> bool:
        """Store ``features`` as the most recently used, evicting the least recently used first.

        Returns whether it was stored: not when the cache is off or the image alone exceeds
        the budget (evicting everything would not make room, so nothing is evicted).
        """
        size = features.nbytes()
        if size > self.stats.budget_bytes:
            return False
        old = self._entries.pop(key, None)
        if old is not None:
            self.stats.bytes -= old[1]
        while self.stats.bytes + size > self.stats.budget_bytes:
            _, (_, dropped) = self._entries.popitem(last=False)
            self.stats.bytes -= dropped
            self.stats.evictions += 1
        self._entries[key] = (features, size)
        self.stats.bytes += size
        self.stats.items = len(self._entries)
        self.stats.peak_bytes = max(self.stats.peak_bytes, self.stats.bytes)
        return True

    def clear(self) -> None:
        """Drop every entry (the counters of past look-ups stay)."""
        self._entries.clear()
        self.stats.bytes = self.stats.items = 0


__all__ = ["MIB", "CacheStats", "FeatureCache", "FeatureKey", "ImageFeatures"]
