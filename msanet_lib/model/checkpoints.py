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

The renaming (:func:`adapt_to_model`: wrapper prefixes, BAM's ``encoder`` copy, the one
PSPNet -> MSANet map :data:`PSPNET_TO_MSANET`) is shared with stage 2's ``load_base_learner``,
which reads the same files and our own stage-1/stage-2 files. Our own training checkpoints are
written and read by :mod:`msanet_lib.training.checkpoint`.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from msanet_lib.backbones.state_dicts import (
    LoadReport,
    extract_state_dict,
    match_state_dict,
    read_weights_file,
    rename_prefixes,
    strip_wrapper_prefixes,
)
from msanet_lib.runtime import unwrap_model

HOW_TO_GET = (
    "The authors' trained base learners (initmodel/PSPNet/{pascal,coco}/split{0..3}/"
    "{resnet50,resnet101,vgg}/best.pth) and MSANet models are linked in the MSANet README "
    "(github.com/AIVResearch/MSANet, OneDrive folders)."
)
BACKBONE_PREFIXES: tuple[str, ...] = tuple(f"layer{i}." for i in range(5))
# The one rename map between the two homes of PSPNet's head: PSPNet (and BAM's best.pth) keep
# it as ``ppm``/``cls``, MSANet as the two halves of ``learner_base``.
PSPNET_TO_MSANET: dict[str, str] = {"ppm.": "learner_base.0.", "cls.": "learner_base.1."}
MSANET_TO_PSPNET: dict[str, str] = {new: old for old, new in PSPNET_TO_MSANET.items()}
BASE_LEARNER_PREFIXES: tuple[str, ...] = (*PSPNET_TO_MSANET, *MSANET_TO_PSPNET)
# BAM's PSPNet registers its backbone twice: ``layer{i}`` and ``encoder.{i}`` (same tensors).
ENCODER_PREFIX = "encoder."


@dataclass
class AdaptedState:
    """A file's tensors renamed to a model's names (the "adapt" step of the weights layer).

    Attributes:
        state: the tensors under the model's names.
        file_format: ``"pspnet"`` (a base-learner file: backbone + ``ppm``/``cls``) or
            ``"msanet"`` (a full MSANet, or any file without a PSPNet-named head).
        prefixes_removed: wrapper prefixes stripped from the keys (``module.``).
        ignored: file keys dropped on purpose (BAM's ``encoder`` copy).
        notes: human-readable remarks for the report.
    """

    state: dict[str, Tensor]
    file_format: str
    prefixes_removed: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def adapt_to_model(raw: Mapping[str, Tensor], expected: Mapping[str, Tensor]) -> AdaptedState:
    """Rename a PSPNet/MSANet state dict (the authors', BAM's or ours) to the names of a model.

    Steps: strip wrapper prefixes, drop BAM's ``encoder`` copy (:func:`drop_encoder_duplicate`),
    detect the format, then move the PSPNet head to where the model keeps it (``ppm``/``cls``
    <-> ``learner_base.0/1``, :data:`PSPNET_TO_MSANET`). Used by :func:`load_authors_checkpoint`
    and by stage 2's ``load_base_learner``, so both read a file the same way.

    Args:
        raw: the file's tensors.
        expected: the model's ``state_dict()`` (only its keys are read).
    """
    state, removed = strip_wrapper_prefixes(raw)
    state, ignored, notes = drop_encoder_duplicate(state, expected)
    file_format = "pspnet" if any(k.startswith(tuple(PSPNET_TO_MSANET)) for k in state) else "msanet"
    renames = _head_renames(expected)
    if renames is not None:
        state = rename_prefixes(state, renames)
    return AdaptedState(state, file_format, removed, ignored, notes)


def load_authors_checkpoint(
    model: nn.Module,
    source: str | Path,
    *,
    strict: bool = True,
    allow_pickle: bool = False,
) -> LoadReport:
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
        A :class:`~msanet_lib.backbones.state_dicts.LoadReport` whose ``file_format`` is
        ``"pspnet"`` (a base-learner file) or ``"msanet"`` (a full model).

    Raises:
        FileNotFoundError: no such file (names the path and where to download it).
        ValueError: corrupt or truncated file, a pickle without ``allow_pickle``, a file that
            holds no weights, or (``strict``) a key or shape mismatch.
    """
    path = Path(source)
    obj = read_weights_file(path, how_to_get=HOW_TO_GET, allow_pickle=allow_pickle)
    raw, extras = extract_state_dict(obj, path)
    target = unwrap_model(model)
    expected = target.state_dict()
    adapted = adapt_to_model(raw, expected)
    state, ignored, notes = adapted.state, adapted.ignored, adapted.notes

    # Which model keys this file is meant to fill, and which file keys it is meant to provide.
    untouched: list[str] = []
    if adapted.file_format == "pspnet" and any(not is_pspnet_part(k) for k in expected):
        untouched = [k for k in expected if not is_pspnet_part(k)]
        expected = {k: v for k, v in expected.items() if is_pspnet_part(k)}
        notes.append(
            f"base-learner file: loaded only the backbone and the base learner; {len(untouched)} "
            "other model tensors (the meta learner) keep their current values"
        )
    model_head = _head_renames(expected)
    extra: list[str] = []
    if adapted.file_format == "msanet" and model_head == MSANET_TO_PSPNET:
        extra = [k for k in state if not is_pspnet_part(k)]
        if extra:
            notes.append(
                f"MSANet file into a PSPNet: ignored {len(extra)} meta-learner tensors "
                "(a PSPNet has only the backbone and the base learner)"
            )
    if model_head is None:
        extra = [k for k in state if k.startswith(BASE_LEARNER_PREFIXES)]
        if extra:
            notes.append(f"the model has no base learner: ignored {len(extra)} base-learner tensors")
    ignored += extra
    dropped = set(extra)
    state = {k: v for k, v in state.items() if k not in dropped}

    match = match_state_dict(expected, state)
    report = LoadReport.from_match(
        str(path), adapted.file_format, match, untouched=untouched, ignored=ignored,
        prefixes_removed=adapted.prefixes_removed, epoch=_as_int(extras.get("epoch")), notes=notes,
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


def is_pspnet_part(key: str) -> bool:
    """Backbone or base-learner key (the part of a model a PSPNet file can fill), under
    PSPNet's or MSANet's names."""
    return key.startswith(BACKBONE_PREFIXES + BASE_LEARNER_PREFIXES)


def drop_encoder_duplicate(
    state: dict[str, Tensor], expected: Mapping[str, Tensor]
) -> tuple[dict[str, Tensor], list[str], list[str]]:
    """Remove BAM's ``encoder.{i}.*`` copy of ``layer{i}.*`` unless the model has ``encoder``.

    If a file only has the ``encoder`` copy, it is renamed to ``layer{i}.*``.

    Returns:
        ``(state, dropped file keys, notes)``.

    Raises:
        ValueError: an ``encoder`` tensor differs from its ``layer`` twin (a modified file).
    """
    if any(k.startswith(ENCODER_PREFIX) for k in expected) or not any(
        k.startswith(ENCODER_PREFIX) for k in state
    ):
        return state, [], []
    out: dict[str, Tensor] = {}
    dropped: list[str] = []
    for key, value in state.items():
        if not key.startswith(ENCODER_PREFIX):
            out[key] = value
            continue
        index, rest = key[len(ENCODER_PREFIX) :].split(".", 1)
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


def _head_renames(expected: Mapping[str, Tensor]) -> dict[str, str] | None:
    """The rename map that moves a PSPNet head to where the model keeps it: MSANet
    (``learner_base``) :data:`PSPNET_TO_MSANET`, PSPNet (``ppm``/``cls``) :data:`MSANET_TO_PSPNET`,
    None when the model has no base learner."""
    if any(k.startswith(tuple(MSANET_TO_PSPNET)) for k in expected):
        return PSPNET_TO_MSANET
    if any(k.startswith(tuple(PSPNET_TO_MSANET)) for k in expected):
        return MSANET_TO_PSPNET
    return None


def _as_int(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    if isinstance(value, Tensor) and value.numel() == 1:
        return int(value.item())
    return None
