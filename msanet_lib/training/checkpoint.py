"""Checkpoints: atomic writes, exact resume, and a small export for shipping.

A training checkpoint (``last.pth``, ``best.pth``) is a dict that ``torch.load(...,
weights_only=True)`` can read (tensors and plain Python values only):

======================  =========================================================================
key                     content
======================  =========================================================================
``format``              ``"msanet-train-checkpoint"``, ``format_version`` = 1
``stage``               ``"pretrain"`` (AttributeNet, stage 0), ``"base"`` (PSPNet, stage 1) or ``"meta"`` (MSANet, stage 2)
``config``              the full training config (:meth:`TrainConfig.to_dict`)
``model_config``        the MSANetConfig fields of the model (``shots`` included)
``state_dict``          model weights (no ``module.``/``_orig_mod.`` prefixes)
``epoch``               epochs completed (the next epoch to run is ``epoch``)
``iteration``           optimizer steps taken so far (global, over all epochs)
``optimizer``           ``optimizer.state_dict()``; ``scheduler``: :class:`PolySchedule` state
``grad_scaler``         fp16 GradScaler state or ``None``
``rng``                 Python, NumPy, torch CPU and CUDA generator states
``metrics``             history and best-so-far values (``best_miou``, ``best_epoch`` ...)
``library_version``     ``msanet_lib.__version__``
======================  =========================================================================

An export (``export_model``) keeps only ``format = "msanet-export"``, ``stage``,
``model_config``, float32 ``state_dict``, ``metrics`` and ``library_version``: small enough to
ship in the repository, and read by ``msanet-eval`` like a full checkpoint.

Saves are atomic: the file is written to a temporary name in the same folder, flushed and
fsync'ed, then ``os.replace``-d onto the target. A crash or kill during a save leaves the
previous checkpoint untouched and loadable.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch

from msanet_lib import __version__
from msanet_lib.backbones.state_dicts import strip_wrapper_prefixes
from msanet_lib.runtime import atomic_open

FORMAT = "msanet-train-checkpoint"
EXPORT_FORMAT = "msanet-export"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("config", "state_dict", "epoch", "iteration", "optimizer", "scheduler", "rng",
                 "library_version", "metrics")


# --------------------------------------------------------------------------------------------
# Random generator states
# --------------------------------------------------------------------------------------------


def capture_rng_state() -> dict[str, Any]:
    """Every global generator's state, as tensors and plain values (weights_only-safe)."""
    py_version, py_state, py_gauss = random.getstate()
    # the legacy global NumPy generator is what augmentation code draws from, so it is saved
    kind, keys, pos, has_gauss, gauss = np.random.get_state()  # noqa: NPY002
    state: dict[str, Any] = {
        "python": {"version": py_version, "state": list(py_state), "gauss": py_gauss},
        "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                  "has_gauss": int(has_gauss), "gauss": float(gauss)},
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_initialized() else [],
    }
    return state


def restore_rng_state(state: Mapping[str, Any]) -> None:
    """Inverse of :func:`capture_rng_state`. CUDA states are restored when CUDA is in use."""
    py = state["python"]
    random.setstate((py["version"], tuple(py["state"]), py["gauss"]))
    nps = state["numpy"]
    np.random.set_state((nps["kind"], nps["keys"].numpy().astype(np.uint32),  # noqa: NPY002
                         nps["pos"], nps["has_gauss"], nps["gauss"]))
    torch.set_rng_state(state["torch"])
    cuda_states = state.get("cuda") or []
    if cuda_states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(cuda_states[: torch.cuda.device_count()])


# --------------------------------------------------------------------------------------------
# Atomic file writes
# --------------------------------------------------------------------------------------------


def atomic_torch_save(obj: Any, path: str | Path) -> Path:
    """``torch.save`` to ``path`` so that ``path`` is either the old file or the complete new one.

    The data goes to a temporary file in the same directory, is fsync'ed, then replaces
    ``path`` (:func:`msanet_lib.runtime.atomic_open`); on any error ``path`` is untouched.
    """
    with atomic_open(path, "wb") as handle:
        torch.save(obj, handle)
    return Path(path)


def save_checkpoint(
    path: str | Path,
    *,
    stage: str,
    config: Mapping[str, Any],
    model_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    epoch: int,
    iteration: int,
    optimizer: Mapping[str, Any] | None,
    scheduler: Mapping[str, Any] | None,
    metrics: Mapping[str, Any],
    grad_scaler: Mapping[str, Any] | None = None,
    rng: Mapping[str, Any] | None = None,
) -> Path:
    """Write a training checkpoint atomically (see the module docstring for the keys).

    ``rng`` defaults to the current global generator states, so call this at the point the run
    would continue from.
    """
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "config": dict(config),
        "model_config": dict(model_config),
        # a DDP / torch.compile model's keys are saved without the wrapper's prefix
        "state_dict": strip_wrapper_prefixes(state_dict)[0],
        "epoch": int(epoch),
        "iteration": int(iteration),
        "optimizer": optimizer,
        "scheduler": dict(scheduler) if scheduler is not None else None,
        "grad_scaler": grad_scaler,
        "rng": dict(rng) if rng is not None else capture_rng_state(),
        "metrics": dict(metrics),
        "library_version": __version__,
    }
    return atomic_torch_save(payload, path)


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` or :func:`export_model`.

    Raises:
        FileNotFoundError: ``path`` does not exist.
        ValueError: the file is truncated, not a torch file, or lacks required keys.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Checkpoint {path} does not exist. Check the path, or train "
                                "first with `msanet-train` (it writes <out>/meta_<K>shot/best.pth).")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises several types for truncated / foreign files
        raise ValueError(f"Checkpoint {path} cannot be read ({type(exc).__name__}: {exc}). "
                         "The file is incomplete or not a msanet_lib checkpoint; use another "
                         "checkpoint (e.g. best.pth next to it) or train again.") from exc
    if not isinstance(ckpt, dict):
        raise ValueError(f"Checkpoint {path} holds a {type(ckpt).__name__}, not a dict.")
    fmt = ckpt.get("format")
    if fmt == EXPORT_FORMAT:
        required: tuple[str, ...] = ("model_config", "state_dict", "library_version")
    elif fmt == FORMAT:
        required = REQUIRED_KEYS
    else:
        raise ValueError(f"Checkpoint {path} is not a msanet_lib checkpoint (format={fmt!r}). "
                         "For the authors' files use msanet_lib.model.checkpoints."
                         "load_authors_checkpoint.")
    missing = [k for k in required if k not in ckpt]
    if missing:
        raise ValueError(f"Checkpoint {path} lacks the keys {missing}; it is damaged or from an "
                         "incompatible version of msanet_lib.")
    return ckpt


def export_model(
    path: str | Path,
    *,
    stage: str,
    model_config: Mapping[str, Any],
    state_dict: Mapping[str, torch.Tensor],
    metrics: Mapping[str, Any] | None = None,
    config: Mapping[str, Any] | None = None,
) -> Path:
    """Write the shipping file: model config + float32 CPU weights (+ metrics), atomically."""
    weights = {
        k: (v.detach().to("cpu", torch.float32) if v.is_floating_point() else v.detach().cpu())
        .contiguous()
        .clone()
        for k, v in strip_wrapper_prefixes(state_dict)[0].items()
    }
    payload = {
        "format": EXPORT_FORMAT,
        "format_version": FORMAT_VERSION,
        "stage": stage,
        "model_config": dict(model_config),
        "state_dict": weights,
        "metrics": dict(metrics or {}),
        "config": dict(config) if config is not None else None,
        "library_version": __version__,
    }
    return atomic_torch_save(payload, path)
