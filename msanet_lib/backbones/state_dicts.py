"""Reading weight files safely and matching their tensors to a model, with clear errors.

Shared by the ImageNet-weights loader (:mod:`msanet_lib.backbones.pretrained`) and the
checkpoint loader (:mod:`msanet_lib.model.checkpoints`).

Safety: files are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers. A file holding pickled Python objects (e.g. a whole model saved with
``torch.save(model)``) can only be read by unpickling it, which may run code from the file, so
that is done only when the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

# Prefixes added by wrappers: DistributedDataParallel / DataParallel and torch.compile.
WRAPPER_PREFIXES: tuple[str, ...] = ("module.", "_orig_mod.")

# BatchNorm counters absent from files written by PyTorch < 0.4.1; they never affect eval.
BENIGN_MISSING_SUFFIXES: tuple[str, ...] = ("num_batches_tracked",)

LIST_LIMIT = 10


def read_weights_file(path: str | Path, *, how_to_get: str, allow_pickle: bool = False) -> Any:
    """``torch.load`` a weights file onto the CPU, turning every failure into a clear error.

    Args:
        path: the file.
        how_to_get: one sentence telling the user where to obtain the file (used in errors).
        allow_pickle: also accept files that need full unpickling (runs code from the file).

    Raises:
        FileNotFoundError: ``path`` is not a file (names the absolute path looked for).
        ValueError: the file is corrupt/truncated/not a PyTorch file, or needs unpickling and
            ``allow_pickle`` is False.
    """
    path = Path(path).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: looked for {path.resolve()}. {how_to_get}")
    corrupt = (
        f"{path} is not a PyTorch checkpoint or is truncated; re-download it. {how_to_get}"
    )
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):
            raise ValueError(corrupt) from err
        if not allow_pickle:
            raise ValueError(
                f"{path} contains pickled Python objects (for example a whole model saved with "
                "torch.save(model)), and unpickling runs code stored in the file. If you trust "
                "where the file comes from, pass allow_pickle=True."
            ) from err
    except (RuntimeError, EOFError, OSError, KeyError, ValueError, IndexError) as err:
        raise ValueError(corrupt) from err
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # any failure here means the pickle cannot be rebuilt
        raise ValueError(
            f"{path} could not be unpickled ({type(err).__name__}: {err}). A whole-model pickle "
            "needs the code of the class it was saved from; otherwise the file is corrupt. "
            f"{how_to_get}"
        ) from err


def extract_state_dict(obj: Any, path: str | Path) -> tuple[dict[str, Tensor], dict[str, Any]]:
    """The tensors of a loaded file and its other top-level entries.

    Accepts an ``nn.Module`` (its ``state_dict()``), a dict with ``'state_dict'`` or ``'model'``
    (a mapping or a module), or a plain ``{name: tensor}`` mapping.

    Returns:
        ``(state_dict, extras)`` where ``extras`` holds the other top-level entries
        (e.g. ``'epoch'``).
    """
    if isinstance(obj, nn.Module):
        return dict(obj.state_dict()), {}
    if isinstance(obj, Mapping):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], Mapping | nn.Module):
                inner, _ = extract_state_dict(obj[key], path)
                return inner, {k: v for k, v in obj.items() if k != key}
        if obj and all(isinstance(v, Tensor) for v in obj.values()):
            return dict(obj), {}
        keys = ", ".join(repr(k) for k in list(obj)[:LIST_LIMIT])
        raise ValueError(
            f"{path} holds a dict without model weights (top-level keys: {keys}); expected a "
            "state dict, or a dict with a 'state_dict' entry."
        )
    raise ValueError(
        f"{path} holds a {type(obj).__name__}, not model weights; expected a state dict, a dict "
        "with a 'state_dict' entry, or a pickled nn.Module."
    )


def strip_wrapper_prefixes(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Remove ``module.`` / ``_orig_mod.`` when EVERY key carries it (DDP, torch.compile).

    Returns the new dict and the prefixes removed, in order.
    """
    out = dict(state)
    removed: list[str] = []
    changed = True
    while changed and out:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in out):
                out = {k[len(prefix) :]: v for k, v in out.items()}
                removed.append(prefix)
                changed = True
    return out, removed


@dataclass
class StateDictMatch:
    """How a source state dict lines up with the keys a model expects.

    Attributes:
        loadable: source tensors whose key and shape match the model.
        missing: expected model keys absent from the source.
        unexpected: source keys the model does not have.
        mismatched: ``(key, source shape, model shape)`` for keys present in both.
        benign_missing: missing BatchNorm counters (``num_batches_tracked``), left as they are.
    """

    loadable: dict[str, Tensor] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    benign_missing: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every expected key loads and nothing is left over."""
        return not (self.missing or self.unexpected or self.mismatched)

    def problems(self, limit: int = LIST_LIMIT) -> str:
        """Human-readable listing: counts, then the first ``limit`` names of each kind."""
        parts = []
        if self.missing:
            parts.append(f"{len(self.missing)} missing key(s): {_first(self.missing, limit)}")
        if self.unexpected:
            parts.append(
                f"{len(self.unexpected)} unexpected key(s): {_first(self.unexpected, limit)}"
            )
        if self.mismatched:
            shown = [
                f"{k} (file {tuple(s)} vs model {tuple(m)})" for k, s, m in self.mismatched
            ]
            parts.append(f"{len(self.mismatched)} shape mismatch(es): {_first(shown, limit)}")
        return "; ".join(parts) if parts else "all keys match"


def match_state_dict(
    expected: Mapping[str, Tensor], source: Mapping[str, Tensor]
) -> StateDictMatch:
    """Compare ``source`` with the model tensors ``expected`` (key -> tensor), key by key."""
    result = StateDictMatch()
    for key, target in expected.items():
        if key not in source:
            if key.endswith(BENIGN_MISSING_SUFFIXES):
                result.benign_missing.append(key)
            else:
                result.missing.append(key)
            continue
        tensor = source[key]
        if tuple(tensor.shape) != tuple(target.shape):
            result.mismatched.append((key, tuple(tensor.shape), tuple(target.shape)))
        else:
            result.loadable[key] = tensor
    result.unexpected = [k for k in source if k not in expected]
    return result


def _first(items: Iterable[str], limit: int) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
