"""Evaluation that encodes each image once: MSANet's backbone stage served from a feature cache.

:class:`CachedEncoder` builds the :class:`~msanet_lib.model.msanet.Encoding` of a batch of
episodes from per-image features (:class:`~msanet_lib.evaluation.feature_cache.FeatureCache`),
running the backbone only on the images it has not seen; the model then runs every later stage
as usual (``model(x, s_x, s_y, encoding=...)``), so the cached and uncached runs share all
the code after ``encode``. :class:`EpisodeImages` names the images of a batch
(:class:`~msanet_lib.evaluation.feature_cache.FeatureKey`) from what the dataset reports.

Why the numbers are identical, not just close:

- the backbone is frozen, in eval mode, and sees every image unmasked, so an image's features
  do not depend on its episode or its role;
- at test time the dataset makes a query and a support of the same image with the same
  deterministic transform: ``TestResize`` (and HSNet's ``StretchResize``) takes its geometry
  from the image size (the labels are checked to match it) and draws nothing from the
  episode's generator, and ``Normalize`` is fixed; so one key serves both roles. Any other
  transform is refused;
- the convolutions give the same bits for an image whatever its batch-mates, for batches of
  two or more images: checked on an AMX CPU (oneDNN, torch 2.14; resnet_toy at 128 px in
  batches of 2 to 48, ResNet-50 at 473 px in batches of 2 and 3, float32 and bfloat16) and,
  for the channels_last evaluation copy, on an AVX2 one, whose NCHW float32 kernels (the
  model as trained) differ by up to 2 ulp with the batch-mates.
  A batch of ONE image goes through other float32 kernels (up to 2.6e-5 apart on resnet_toy),
  and the uncached path always encodes the query with its shots, so a lone missing image is
  encoded beside a copy of itself. On a GPU, cuDNN may choose its algorithms by batch size;
  there the cached run is the same function up to float rounding (not checked bit for bit);
- the assembled maps have the uncached maps' shapes, dtype and memory format, and the later
  stages run on the same batches as without the cache.

The tests (``tests/evaluation/test_feature_cache.py``) hold the channels_last copy's outputs to
``torch.equal``, the NCHW model's to float rounding, and the scores to equality.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from msanet_lib.data.transforms import Compose, Normalize, StretchResize, TestResize
from msanet_lib.evaluation.feature_cache import FeatureCache, FeatureKey, ImageFeatures
from msanet_lib.model.msanet import Encoding, MSANet


def transform_identity(transform: object) -> str:
    """The test transform spelled out with its parameters, for :class:`FeatureKey`.

    Raises:
        ValueError: the transform is not made only of the deterministic ``TestResize`` (or
            ``StretchResize``) and ``Normalize`` (a random or unknown transform could give one
            image two tensors).
    """
    steps = transform.transforms if isinstance(transform, Compose) else [transform]
    parts = []
    for step in steps:
        if isinstance(step, TestResize):
            parts.append(f"TestResize({step.size}, ignore={step.ignore_label})")
        elif isinstance(step, StretchResize):
            parts.append(f"StretchResize({step.size})")
        elif isinstance(step, Normalize):
            parts.append(f"Normalize(mean={tuple(step.mean)}, std={tuple(step.std)})")
        else:
            raise ValueError(
                f"the feature cache needs a deterministic test transform (TestResize or "
                f"StretchResize, Normalize); this dataset uses {transform!r}. Evaluate without "
                "--feature-cache.")
    return " ".join(parts)


class EpisodeImages:
    """The :class:`FeatureKey` of every image of a batch of val episodes, in encoding order.

    Episodes name their images by label path (``query_name``, ``support_names`` in
    ``support_imgs`` row order, as :class:`~msanet_lib.data.datasets.FewShotDataset` gives
    them); the dataset's lists pair each label with its image file, which is the key.

    Args:
        dataset: a val :class:`~msanet_lib.data.datasets.FewShotDataset` (anything with
            ``lists`` of ``(image, label)`` pairs and a ``transform``).
        precision: ``"float32"`` or the autocast name the backbone runs under.

    Raises:
        ValueError: the dataset does not name its images, pairs a label with two images, or
            uses a transform that is not deterministic.
    """

    def __init__(self, dataset: Any, precision: str) -> None:
        lists = getattr(dataset, "lists", None)
        if lists is None or not hasattr(dataset, "transform"):
            raise ValueError("the feature cache needs episodes that name their images (a val "
                             "FewShotDataset); evaluate this dataset without it.")
        self.transform = transform_identity(dataset.transform)
        self.precision = precision
        self.image_of: dict[str, str] = {}
        pairs = [*lists.images, *(p for files in lists.class_files.values() for p in files)]
        for image, label in pairs:
            if self.image_of.setdefault(label, image) != image:
                raise ValueError(f"the dataset's lists pair the label {label} with two images "
                                 f"({self.image_of[label]}, {image}); the feature cache cannot "
                                 "tell them apart by name.")

    def key(self, label_name: str) -> FeatureKey:
        """The key of the image whose label is ``label_name``."""
        image = self.image_of.get(label_name)
        if image is None:
            raise ValueError(f"the episode names {label_name}, which is not in the dataset's lists")
        return FeatureKey(image, self.transform, self.precision)

    def keys(self, batch: Mapping[str, Any]) -> list[FeatureKey]:
        """Queries first, then every episode's shots in row order: ``MSANet.encode``'s order.

        batch: a collated batch with ``query_name`` (B names) and ``support_names`` (B lists
        of K names).
        """
        if "query_name" not in batch or "support_names" not in batch:
            raise ValueError("the feature cache needs 'query_name' and 'support_names' in every "
                             "episode (FewShotDataset gives them)")
        names = [*batch["query_name"], *(n for shots in batch["support_names"] for n in shots)]
        return [self.key(name) for name in names]


def _shape_only(t: Tensor) -> Tensor:
    """A zero-stride view of one zero with ``t``'s shape and dtype: no storage to speak of."""
    return t.new_zeros(()).expand(t.shape)


class CachedEncoder:
    """MSANet's ``encode`` with every image's features computed once and then cached.

    Args:
        model: the MSANet that will consume the encodings (typically the evaluation copy of
            :func:`~msanet_lib.model.inference.prepare_for_inference`), in eval mode.
        cache: where the per-image features live; one cache per model.

    Raises:
        ValueError: ``model`` is not an MSANet (only it can take an ``encoding``).
    """

    def __init__(self, model: MSANet, cache: FeatureCache) -> None:
        if not isinstance(model, MSANet):
            raise ValueError(f"the feature cache works with MSANet models, not {type(model).__name__}")
        self.model = model
        self.cache = cache
        layers, first_block = model.encoding_reads()
        self.read_layers = frozenset(layers)
        self.first_block = first_block
        # One batch's maps, rewritten at every call: stacking into fresh memory costs its page
        # faults each time (ResNet-50 1-shot at 473 px: 240 ms against 80 ms into these).
        self._buffers: dict[tuple[str, int], Tensor] = {}

    def encode(self, x: Tensor, s_x: Tensor, keys: Sequence[FeatureKey]) -> Encoding:
        """The :class:`Encoding` of ``(x, s_x)``, equal to ``model.encode(x, s_x)`` where read.

        Args:
            x: (B, 3, H, W) queries; s_x: (B, K, 3, H, W) shots (already on the device, in the
                layout the uncached call would get).
            keys: the B + B*K images' keys, queries first then the shots episode by episode
                (:meth:`EpisodeImages.keys`).

        Returns:
            An :class:`Encoding` whose read maps (:meth:`MSANet.encoding_reads`) equal the
            backbone's; the others are zero-stride placeholders of the right shape. Its maps
            live in buffers the next call overwrites: run the model on it first.
        """
        b, k = s_x.shape[:2]
        if len(keys) != b + b * k:
            raise ValueError(f"{len(keys)} keys for {b} episodes of {k} shots ({b + b * k} images)")
        found: dict[FeatureKey, ImageFeatures] = {}
        missing: dict[FeatureKey, int] = {}  # key -> its first row in the batch
        for row, key in enumerate(keys):
            if key in found or key in missing:
                # The same image twice in one batch (a support of two episodes): encoded once.
                self.cache.stats.hits += 1
                continue
            features = self.cache.get(key)
            if features is None:
                missing[key] = row
            else:
                found[key] = features
        if missing:
            found |= self._encode_missing(x, s_x, missing)
        rows = [found[key] for key in keys]
        layers = [self._stack(("layer", i), [r.layers[i] for r in rows], i in self.read_layers)
                  for i in range(len(rows[0].layers))]
        blocks = [self._stack(("block", i), [r.blocks[i] for r in rows], i >= self.first_block)
                  for i in range(len(rows[0].blocks))]
        return Encoding.split(layers, blocks, b, k)

    def _encode_missing(self, x: Tensor, s_x: Tensor, missing: Mapping[FeatureKey, int]
                        ) -> dict[FeatureKey, ImageFeatures]:
        """Run the backbone on the missing images only, cache and return their features."""
        b, k = s_x.shape[:2]
        # The very batch the uncached model would encode (same layout), then only its new rows.
        images = torch.cat([x, s_x.reshape(b * k, *s_x.shape[2:])])
        rows = list(missing.values())
        # Never a batch of one: its float32 kernels differ from a larger batch's (module docstring).
        index = torch.tensor(rows if len(rows) > 1 else rows * 2, device=images.device)
        out = self.model.encode_images(images.index_select(0, index))
        new: dict[FeatureKey, ImageFeatures] = {}
        for pos, key in enumerate(missing):
            # clone(): the image's own storage, so an evicted image frees its memory and a
            # cached one does not pin the whole batch's.
            features = ImageFeatures(
                layers=tuple(t[pos].clone() if i in self.read_layers else _shape_only(t[pos])
                             for i, t in enumerate(out.layers)),
                blocks=tuple(t[pos].clone() if i >= self.first_block else _shape_only(t[pos])
                             for i, t in enumerate(out.feats)),
            )
            self.cache.put(key, features)
            new[key] = features
        return new

    def _stack(self, slot: tuple[str, int], maps: list[Tensor], read: bool) -> Tensor:
        """(N, C, h, w) from N per-image maps, in their memory format, in the slot's buffer;
        unread maps stay a zero-stride placeholder."""
        first = maps[0]
        if not read:
            return first.unsqueeze(0).expand(len(maps), *first.shape)
        # channels_last maps (the CPU evaluation copy) are stacked as (N, h, w, C): a plain
        # stack would make them contiguous, and the next convolutions round differently then.
        channels_last = (first.dim() == 3 and not first.is_contiguous()
                         and first.permute(1, 2, 0).is_contiguous())
        parts = [m.permute(1, 2, 0) for m in maps] if channels_last else maps
        shape = (len(parts), *parts[0].shape)
        buffer = self._buffers.get(slot)
        if (buffer is None or buffer.shape != shape or buffer.dtype != first.dtype
                or buffer.device != first.device
                or buffer.is_inference() != torch.is_inference_mode_enabled()):
            buffer = self._buffers[slot] = first.new_empty(shape)
        torch.stack(parts, out=buffer)
        return buffer.permute(0, 3, 1, 2) if channels_last else buffer


__all__ = ["CachedEncoder", "EpisodeImages", "transform_identity"]
