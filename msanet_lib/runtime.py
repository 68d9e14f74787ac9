"""The bottom layer: devices, seeds, autocast, model unwrapping, atomic files, the ignore label,
and the error policy of every command.

Everything else in ``msanet_lib`` may import this module; it imports nothing from ``msanet_lib``.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import random
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np
import torch
from torch import nn

IGNORE_LABEL = 255
"""Label value of pixels that no loss and no metric counts (object borders in PASCAL)."""

AMP_DTYPES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16}
"""Names accepted by ``--amp`` / ``runtime.amp``; ``None`` or ``"none"`` is float32."""


# --------------------------------------------------------------------------- devices, seeds


def _mps_available() -> bool:
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def select_device(preference: str = "auto", local_rank: int = 0) -> torch.device:
    """CUDA (this process's GPU under torchrun), then Apple MPS, then CPU; or the one named.

    ``preference``: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``.

    Raises:
        ValueError: an unknown name, or a device this machine does not have.
    """
    if preference == "auto":
        if torch.cuda.is_available():
            preference = "cuda"
        elif _mps_available():
            preference = "mps"
        else:
            preference = "cpu"
    try:
        device = torch.device(preference)
    except RuntimeError as err:
        raise ValueError(f"--device {preference!r}: choose auto, cpu, cuda, cuda:N or mps.") from err
    if device.type not in ("cpu", "cuda", "mps"):
        raise ValueError(f"--device {preference!r}: choose auto, cpu, cuda, cuda:N or mps.")
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"--device {preference}: this PyTorch build sees no CUDA GPU; "
                             "use --device auto.")
        count = torch.cuda.device_count()
        index = device.index if device.index is not None else local_rank % count
        if index >= count:
            raise ValueError(f"--device {preference}: this machine has {count} GPU(s).")
        device = torch.device("cuda", index)
        torch.cuda.set_device(device)
    if device.type == "mps" and not _mps_available():
        raise ValueError("--device mps: Apple MPS is not available here; use --device auto.")
    return device


def set_tf32(enabled: bool = True) -> None:
    """Let CUDA float32 matrix products and convolutions use TF32 tensor cores (or not).

    TF32 keeps float32's range with a 10-bit mantissa: the similarity and prior products, which
    run in float32 even under autocast, then use the tensor cores (several times faster on
    Ampere and later). ``runtime.tf32: false`` gives bit-for-bit IEEE float32. No effect on CPUs.
    """
    torch.backends.cuda.matmul.allow_tf32 = bool(enabled)
    torch.backends.cudnn.allow_tf32 = bool(enabled)


def seed_all(seed: int) -> None:
    """Seed Python, NumPy's global stream and torch (every device), as the authors' ``setup_seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)  # noqa: NPY002 (the authors and the datasets use the global stream)
    torch.manual_seed(seed)


def autocast(device: torch.device, amp: str | None) -> contextlib.AbstractContextManager[Any]:
    """``torch.autocast`` in bf16 or fp16 on ``device``; a no-op for ``None`` or ``"none"``.

    Raises:
        ValueError: an unknown name, or fp16 on a device without fast float16 (the CPU).
    """
    if amp is None or amp == "none":
        return contextlib.nullcontext()
    if amp not in AMP_DTYPES:
        raise ValueError(f"amp={amp!r}: choose none, bf16 or fp16.")
    dtype = AMP_DTYPES[amp]
    if dtype == torch.float16 and device.type == "cpu":
        raise ValueError("amp='fp16' needs a GPU; use amp='bf16' on the CPU.")
    return torch.autocast(device_type=device.type, dtype=dtype)


def cpu_has_bf16_units() -> bool:
    """Whether this CPU computes bfloat16 in hardware (AVX512-BF16 or AMX tiles).

    Without them oneDNN emulates bfloat16 and a bf16 autocast is much slower than float32
    (2 threads of an AVX2 AMD EPYC: ResNet-50 MSANet at 473 px 49.7 s against 3.8 s per 1-shot
    forward, ``scripts/benchmark.py --authors-code``; the toy model 24.2 s against 0.58 s for
    24 episodes, notebook 10). True when torch cannot tell.
    """
    checks = [getattr(torch.cpu, name, None)
              for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    checks = [check for check in checks if check is not None]
    return not checks or any(check() for check in checks)


def slow_amp_note(device: torch.device, amp: str | None) -> str | None:
    """One line for the commands to print when ``amp`` would be slower than float32 on
    ``device`` (bfloat16 on a CPU without bf16 units), else None."""
    if device.type == "cpu" and amp in ("bf16", "bfloat16") and not cpu_has_bf16_units():
        return ("this CPU has no bfloat16 units (AVX512-BF16 or AMX): bf16 is emulated and runs "
                "far slower than float32 here (13x for ResNet-50, 41x for the toy model on an "
                "AVX2 CPU); drop --amp bf16 to run in float32.")
    return None


def float32_autocast_off(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Run ``fn`` with autocast disabled and its float16/bfloat16 tensor arguments in float32.

    For products whose magnitude float16 cannot hold (65504): the Gram matrices of the scene
    difference and the unnormalised dot products of the prior. float32 and float64 inputs pass
    unchanged, so float32 results are bit-identical with or without this decorator.
    """

    def cast(value: Any) -> Any:
        if isinstance(value, torch.Tensor) and value.dtype in (torch.float16, torch.bfloat16):
            return value.float()
        return value

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        device = next((a.device.type for a in args if isinstance(a, torch.Tensor)), "cpu")
        with torch.autocast(device_type=device, enabled=False):
            return fn(*[cast(a) for a in args], **{k: cast(v) for k, v in kwargs.items()})

    return wrapper


_STATIC_PADDING: list[bool] = [False]  # set by static_padding(); a list so the flag is mutable


@contextlib.contextmanager
def static_padding(enabled: bool = True) -> Iterator[None]:
    """Within the block, :func:`padded_length` returns its static bound on the CPU too.

    That is what every accelerator runs; on the CPU it shows the accelerator path (the tests
    count its host syncs: there must be none) and lets ``torch.compile`` on the CPU keep one graph.
    """
    before = _STATIC_PADDING[0]
    _STATIC_PADDING[0] = enabled
    try:
        yield
    finally:
        _STATIC_PADDING[0] = before


def pixel_rows(feat: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w) -> (N, h*w, C), one row per pixel: a view, never a copy, whether ``feat``
    is NCHW or channels_last (``reshape(N, C, h*w)`` copies a channels_last map, which cost
    the similarity and prior products about 60 MB of peak memory per ResNet-50 episode)."""
    n, c, h, w = feat.shape
    return feat.permute(0, 2, 3, 1).reshape(n, h * w, c)


def padded_length(counts: torch.Tensor, bound: int, extra: int = 0) -> int:
    """Columns to keep when per-sample selections of ``counts`` (N,) items are padded to one size.

    Returns ``min(max(counts.max() + extra, 1), bound)`` on the CPU in eager mode, where reading
    the count costs nothing and the smaller gather is several times faster than the full one.
    Returns ``bound`` (the static maximum, e.g. the number of pixels) on CUDA/MPS, while
    ``torch.compile`` traces, and inside :func:`static_padding`: reading a device tensor on
    the host would wait for the GPU's queue to drain (a sync per call) and break the compiled
    graph. Callers mask the padding, so both give the same result.
    """
    if (counts.device.type != "cpu" or _STATIC_PADDING[0]
            or torch.compiler.is_compiling()):
        return bound
    return min(max(int(counts.max()) + extra, 1), bound)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The user's model inside DDP/DataParallel (``.module``) or torch.compile (``._orig_mod``)."""
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif isinstance(getattr(model, "_orig_mod", None), nn.Module):
            model = model._orig_mod
        else:
            return model


# --------------------------------------------------------------------------- atomic files

TEMP_SUFFIX = ".tmp"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w") -> Iterator[IO[Any]]:
    """Open a temporary file next to ``path``; on success it replaces ``path`` in one step.

    Readers see the old file or the complete new one, never a part (a full disk or a crash
    leaves ``path`` untouched). The temporary file, ``.<name>.<random>.tmp``, is removed on any
    error; :func:`remove_stale_temps` clears those a killed process left behind.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=TEMP_SUFFIX, dir=path.parent)
    tmp = Path(tmp_name)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_open`)."""
    with atomic_open(path, "w") as handle:
        handle.write(text)
    return Path(path)


def remove_stale_temps(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete the temporary files of :func:`atomic_open` left in ``folder`` by a killed process.

    ``name``: only those of this target file name. Returns the files removed.
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    pattern = f".{name}.*{TEMP_SUFFIX}" if name else f".*{TEMP_SUFFIX}"
    removed = []
    for stale in folder.glob(pattern):
        with contextlib.suppress(OSError):
            stale.unlink()
            removed.append(stale)
    return removed


def _fsync_dir(directory: Path) -> None:
    """Persist the rename itself (POSIX); skipped where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- command errors


def describe_os_error(err: OSError) -> str:
    """One line naming the file and what to do, for the OS errors a user causes."""
    where = err.filename if err.filename is not None else "a file"
    if err.errno == errno.ENOSPC:
        return (f"no space left on the device while writing {where}: free some space or "
                "choose another folder.")
    if err.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"cannot write or read {where} ({err.strerror}): choose a folder you can write to."
    if isinstance(err, FileNotFoundError) and err.filename is not None:
        return f"{where} does not exist."
    if isinstance(err, IsADirectoryError):
        return f"{where} is a folder; pass a file path."
    return f"{where}: {err.strerror or err}"


def run_command(prog: str, body: Callable[[], int], debug: bool = False) -> int:
    """The error policy of every command: run ``body``; a user's mistake prints one line.

    ValueError (bad values, corrupt files: raised with a message saying what to do), OSError
    (missing files, permissions, a full disk) and running out of GPU memory print
    ``<prog>: error: ...`` and return 2; Ctrl-C returns 130. ``debug`` (``--debug``) prints the
    traceback as well.
    """
    try:
        return body()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted.", file=sys.stderr)
        return 130
    except (ValueError, OSError, torch.cuda.OutOfMemoryError) as err:
        if debug:
            traceback.print_exc()
        if isinstance(err, torch.cuda.OutOfMemoryError):
            message = "the GPU ran out of memory: lower the batch size or use --amp bf16."
        elif isinstance(err, OSError) and err.errno is not None:
            message = describe_os_error(err)  # raised by the OS: name the file, say what to do
        else:
            message = str(err)
        print(f"{prog}: error: {message}", file=sys.stderr)
        if not debug:
            print(f"{prog}: (run again with --debug for the traceback)", file=sys.stderr)
        return 2
