"""The weights layer: reading weight files safely, adapting their names, matching, reporting.

Every load of a weights file into a model goes through the same four steps:

1. **read** (:func:`read_weights_file`, :func:`extract_state_dict`): a file -> its tensors;
2. **adapt**: remove wrapper prefixes (:func:`strip_wrapper_prefixes`), detect the file's format
   and rename its keys to the model's (:func:`rename_prefixes` with the format's map);
3. **match** (:func:`match_state_dict` -> :class:`StateDictMatch`): key by key against the
   tensors the model expects;
4. **report** (:class:`LoadReport`): what the load did, one type for every kind of file.

The formats and their rename maps live with the loaders of each kind of file:
:mod:`msanet_lib.backbones.pretrained` (ImageNet files: the authors', torchvision's, ours),
:mod:`msanet_lib.model.checkpoints` (the authors' MSANet files and BAM/PSPNet base learners,
also used by stage 2 for our own stage-1/stage-2 files). Our training checkpoints
(:mod:`msanet_lib.training.checkpoint`) are written without wrapper prefixes by
:func:`strip_wrapper_prefixes` too.

Safety: files are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers. A file holding pickled Python objects (e.g. a whole model saved with
``torch.save(model)``) can only be read by unpickling it, which may run code from the file, so
that is done only when the caller passes ``allow_pickle=True``.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterable, Mapping, Sequence
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

    A wrapper prefixes every key of the model it wraps, so a prefix only some keys carry is a
    real submodule name (a model may well have a child called ``module``) and is kept. Nested
    wrappers (DDP around a compiled model: ``module._orig_mod.``) are removed one after the other.

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


def rename_prefixes(state: Mapping[str, Tensor], renames: Mapping[str, str]) -> dict[str, Tensor]:
    """Rename keys by prefix (``{old prefix: new prefix}``, first match wins); others are kept.

    The order of the keys is kept, so the loaded keys come out in the file's order.
    """
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        old = next((p for p in renames if key.startswith(p)), None)
        out[renames[old] + key[len(old) :] if old is not None else key] = value
    return out


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
        return describe_problems(self.missing, self.unexpected, self.mismatched, limit)


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


def describe_problems(
    missing: Sequence[str],
    unexpected: Sequence[str],
    mismatched: Sequence[tuple[str, tuple[int, ...], tuple[int, ...]]],
    limit: int = LIST_LIMIT,
) -> str:
    """Counts, then the first ``limit`` names of each kind of gap ("all keys match" if none)."""
    parts = []
    if missing:
        parts.append(f"{len(missing)} missing key(s): {_first(missing, limit)}")
    if unexpected:
        parts.append(f"{len(unexpected)} unexpected key(s): {_first(unexpected, limit)}")
    if mismatched:
        shown = [f"{k} (file {tuple(s)} vs model {tuple(m)})" for k, s, m in mismatched]
        parts.append(f"{len(mismatched)} shape mismatch(es): {_first(shown, limit)}")
    return "; ".join(parts) if parts else "all keys match"


@dataclass
class LoadReport:
    """What a load of a weights file into a model did (every loader returns this type).

    Attributes:
        source: the file read (``"<state dict>"`` for an in-memory dict, ``"torchvision"``).
        file_format: the layout detected: ImageNet files ``"authors-resnet"``,
            ``"torchvision-resnet"``, ``"vgg16_bn"``, ``"msanet"`` (``layer0..4`` keys); the
            authors' trained files ``"pspnet"`` (a base learner) or ``"msanet"`` (a full model).
        loaded: model keys that received a tensor.
        missing: model keys the file should have filled but does not have (kept as they were).
        mismatched: ``(key, file shape, model shape)`` for keys left as they were.
        ignored: file keys deliberately not used (ImageNet classifier, BAM's ``encoder`` copy,
            heads the model does not have).
        unexpected: file keys that should have mapped onto the model but did not.
        untouched: model keys deliberately kept as they were (MSANet's meta learner when a
            base-learner file is loaded).
        prefixes_removed: wrapper prefixes stripped from the file keys (``module.``).
        epoch: the ``'epoch'`` entry of the file, if any.
        notes: human-readable remarks.
    """

    source: str
    file_format: str
    loaded: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[tuple[str, tuple[int, ...], tuple[int, ...]]] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)
    unexpected: list[str] = field(default_factory=list)
    untouched: list[str] = field(default_factory=list)
    prefixes_removed: list[str] = field(default_factory=list)
    epoch: int | None = None
    notes: list[str] = field(default_factory=list)

    @classmethod
    def from_match(cls, source: str, file_format: str, match: StateDictMatch, **extra: Any) -> LoadReport:
        """The report of loading ``match.loadable``; ``extra`` fills the other fields."""
        return cls(source=source, file_format=file_format, loaded=list(match.loadable),
                   missing=match.missing, mismatched=match.mismatched,
                   unexpected=match.unexpected, **extra)

    @property
    def complete(self) -> bool:
        """True when every model tensor the file was meant to fill was loaded."""
        return not (self.missing or self.mismatched)

    @property
    def ok(self) -> bool:
        """True when the load is complete and no file tensor was left unplaced."""
        return self.complete and not self.unexpected

    def problems(self, limit: int = LIST_LIMIT) -> str:
        """The gaps: counts, then the first ``limit`` names of each kind."""
        return describe_problems(self.missing, self.unexpected, self.mismatched, limit)

    def summary(self) -> str:
        """A few lines for logs and warnings: what loaded, the notes, then the gaps."""
        head = f"{self.source} ({self.file_format}): loaded {len(self.loaded)} tensors"
        if self.epoch is not None:
            head += f" (epoch {self.epoch})"
        if self.ignored:
            head += f", ignored {len(self.ignored)} file entries"
        if self.prefixes_removed:
            head += f", removed the wrapper prefixes {', '.join(self.prefixes_removed)}"
        lines = [head, *self.notes]
        if not self.ok:
            lines.append(f"NOT loaded (kept their current values): {self.problems()}")
        return "\n".join(lines)


def _first(items: Iterable[str], limit: int) -> str:
    items = list(items)
    text = ", ".join(items[:limit])
    return text + (f", ... (+{len(items) - limit} more)" if len(items) > limit else "")
