"""Loading the authors' released weights into this library's models (spec §6).

:func:`load_authors_checkpoint` reads any of:

- an MSANet checkpoint ``{'state_dict': ..., 'epoch': ...}`` (keys ``layer0..4``,
  ``learner_base``, ``down_query`` ...), into :class:`~msanet_lib.model.msanet.MSANet`, or only its
  backbone and base learner into a :class:`~msanet_lib.model.pspnet.PSPNet`;
- a BAM/MSANet base-learner ``best.pth`` (``{'state_dict'}`` with ``layer0..4.*``, BAM's duplicate
  ``encoder.{0..4}.*``, ``ppm.*``, ``cls.*``), into a PSPNet, or into an MSANet where ``ppm`` becomes
  ``learner_base.0`` and ``cls`` becomes ``learner_base.1``; the MSANet meta learner then keeps
  its current weights and the report says so;
- the same with a DDP ``module.`` prefix, as a plain state dict, or as a whole pickled model
  (only with ``allow_pickle=True``, because unpickling runs code from the file).

Our own training checkpoints are handled by :mod:`msanet_lib.training.checkpoint`.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from msanet_lib.backbones.state_dicts import (
    StateDictMatch,
    extract_state_dict,
    match_state_dict,
    read_weights_file,
    strip_wrapper_prefixes,
)
from msanet_lib.runtime import unwrap_model

HOW_TO_GET = (
    "The authors' trained base learners (initmodel/PSPNet/{pascal,coco}/split{0..3}/"
    "{resnet50,resnet101,vgg}/best.pth) and MSANet models are linked in the MSANet README "
    "(github.com/AIVResearch/MSANet, OneDrive folders)."
)
BACKBONE_PREFIXES: tuple[str, ...] = tuple(f"layer{i}." for i in range(5))
# Where PSPNet's head lives in each model: PSPNet ``ppm``/``cls``, MSANet ``learner_base.0/1``.
PSPNET_HEAD: tuple[str, str] = ("ppm.", "cls.")
MSANET_HEAD: tuple[str, str] = ("learner_base.0.", "learner_base.1.")


@dataclass
class CheckpointReport:
    """What :func:`load_authors_checkpoint` loaded.

    Attributes:
        source: the file read.
        source_kind: ``"pspnet"`` (a base-learner file) or ``"msanet"`` (a full model).
        loaded: model keys that received a tensor, in the model's order.
        untouched: model keys deliberately kept as they were (the meta learner when loading a
            base-learner file into MSANet).
        ignored: file keys deliberately not used (BAM's ``encoder`` duplicate, a meta learner
            not present in a PSPNet, a base learner absent from an ablated MSANet).
        missing, unexpected, mismatched: real gaps (empty after a strict load).
        prefixes_removed: wrapper prefixes stripped from the file keys (``module.``).
        epoch: the ``'epoch'`` entry of the file, if any.
        notes: human-readable remarks.
    """

    source: str
    source_kind: str
    loaded: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    prefixes_removed: list[str] = field(default_factory=list)
    epoch: int | None = None
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """A short multi-line description."""
        lines = [
            f"{self.source}: {self.source_kind} weights, loaded {len(self.loaded)} tensors"
            + (f" (epoch {self.epoch})" if self.epoch is not None else "")
        ]
        lines += self.notes
        gaps = StateDictMatch(
            missing=self.missing, unexpected=self.unexpected, mismatched=self.mismatched
        )
        if not gaps.ok:
            lines.append("not loaded: " + gaps.problems())
        return "\n".join(lines)


def load_authors_checkpoint(
    model: nn.Module,
    source: str | Path,
    *,
    strict: bool = True,
    allow_pickle: bool = False,
) -> CheckpointReport:
    """Load one of the authors' weight files into ``model`` (PSPNet or MSANet) in place.

    Args:
        model: the target; DDP/DataParallel/torch.compile wrappers are looked through.
        source: path of the file.
        strict: raise if any expected key is missing, unexpected or of another shape (the
            error lists the first names of each and their counts). With ``strict=False``, the
            matching tensors load, the rest is reported in the result and by a warning.
        allow_pickle: accept a whole pickled model (unpickling runs code from the file; only
            for files you trust). Its ``state_dict()`` is then used.

    Returns:
        A :class:`CheckpointReport`.

    Raises:
        FileNotFoundError: no such file (names the path and where to download it).
        ValueError: corrupt or truncated file, a pickle without ``allow_pickle``, a file that
            holds no weights, or (``strict``) a key or shape mismatch.
    """
    path = Path(source)
    obj = read_weights_file(path, how_to_get=HOW_TO_GET, allow_pickle=allow_pickle)
    raw, extras = extract_state_dict(obj, path)
    state, removed = strip_wrapper_prefixes(raw)
    target = unwrap_model(model)
    expected = target.state_dict()

    state, ignored, notes = _drop_encoder_duplicate(state, expected)
    source_kind = "pspnet" if any(k.startswith(PSPNET_HEAD) for k in state) else "msanet"
    state = _move_base_learner(state, expected)

    # Which model keys this file is meant to fill, and which file keys it is meant to provide.
    untouched: list[str] = []
    if source_kind == "pspnet" and any(not _is_pspnet_part(k) for k in expected):
        untouched = [k for k in expected if not _is_pspnet_part(k)]
        expected = {k: v for k, v in expected.items() if _is_pspnet_part(k)}
        notes.append(
            f"base-learner file: loaded only the backbone and the base learner; {len(untouched)} "
            "other model tensors (the meta learner) keep their current values"
        )
    model_head = _head_layout(expected)
    extra: list[str] = []
    if source_kind == "msanet" and model_head == PSPNET_HEAD:
        extra = [k for k in state if not _is_pspnet_part(k)]
        if extra:
            notes.append(
                f"MSANet file into a PSPNet: ignored {len(extra)} meta-learner tensors "
                "(a PSPNet has only the backbone and the base learner)"
            )
    if model_head is None:
        extra = [k for k in state if k.startswith(PSPNET_HEAD + MSANET_HEAD)]
        if extra:
            notes.append(f"the model has no base learner: ignored {len(extra)} base-learner tensors")
    ignored += extra
    dropped = set(extra)
    state = {k: v for k, v in state.items() if k not in dropped}

    match = match_state_dict(expected, state)
    report = CheckpointReport(
        source=str(path),
        source_kind=source_kind,
        loaded=list(match.loadable),
        untouched=untouched,
        ignored=ignored,
        missing=match.missing,
        unexpected=match.unexpected,
        mismatched=match.mismatched,
        prefixes_removed=removed,
        epoch=_as_int(extras.get("epoch")),
        notes=notes,
    )
    if not match.ok and (strict or not match.loadable):
        raise ValueError(
            f"{path} does not fit {type(target).__name__}: {match.problems()}. Check that the "
            "file matches the model's backbone, dataset (16 PASCAL / 61 COCO base classes) and "
            "shots; pass strict=False to load only the matching tensors."
        )
    target.load_state_dict(match.loadable, strict=False)
    if not match.ok:
        warnings.warn(report.summary(), stacklevel=2)
    return report


def _is_pspnet_part(key: str) -> bool:
    """Backbone or base-learner key (the part of a model a PSPNet file can fill)."""
    return key.startswith(BACKBONE_PREFIXES + PSPNET_HEAD + MSANET_HEAD)


def _drop_encoder_duplicate(
    state: dict[str, Tensor], expected: dict[str, Tensor]
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Remove BAM's ``encoder.{i}.*`` copy of ``layer{i}.*`` unless the model has ``encoder``.

    If a file only has the ``encoder`` copy, it is renamed to ``layer{i}.*``.
    """
    if any(k.startswith("encoder.") for k in expected) or not any(
        k.startswith("encoder.") for k in state
    ):
        return state, [], []
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if not key.startswith("encoder."):
            out[key] = value
            continue
        index, rest = key[len("encoder.") :].split(".", 1)
        layer_key = f"layer{index}.{rest}"
        if layer_key in state:
            if not torch.equal(state[layer_key], value):
                raise ValueError(
                    f"{key} and {layer_key} differ; in BAM's PSPNet they are the same tensor, "
                    "so this file was modified or is not a BAM/MSANet base learner."
                )
            dropped.append(key)
        else:
            out[layer_key] = value
    notes = [f"dropped {len(dropped)} duplicate encoder.* tensors (BAM's copy of layer0..4)"]
    return out, dropped, notes if dropped else []


def _head_layout(keys: dict[str, Tensor]) -> tuple[str, str] | None:
    """``MSANET_HEAD`` or ``PSPNET_HEAD``: where the model keeps the PSPNet head (None: nowhere)."""
    if any(k.startswith(MSANET_HEAD) for k in keys):
        return MSANET_HEAD
    if any(k.startswith(PSPNET_HEAD) for k in keys):
        return PSPNET_HEAD
    return None


def _move_base_learner(state: dict[str, Tensor], expected: dict[str, Tensor]) -> dict[str, Tensor]:
    """Rename the PSPNet head between ``ppm``/``cls`` and ``learner_base.0/1`` to fit the model."""
    layout = _head_layout(expected)
    if layout is None:
        return state
    other = PSPNET_HEAD if layout == MSANET_HEAD else MSANET_HEAD
    renames = dict(zip(other, layout))
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        old = next((p for p in renames if key.startswith(p)), None)
        out[renames[old] + key[len(old) :] if old else key] = value
    return out


def _as_int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return int(value.item())
    return None
