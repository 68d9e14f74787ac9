"""Time MSANet (randomly initialised ResNet-50) and print a markdown table.

Measures, at ``--size`` pixels:
- eval forward per 1-shot and 5-shot episode (batch 1, no_grad);
- train step = forward + backward of the trainable part + an SGD step, for a batch of 1 and 2
  1-shot episodes;
- peak memory of each measurement: CUDA ``max_memory_allocated`` on a GPU; on CPU the growth of
  the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``;
  elsewhere the growth of ``ru_maxrss``, which can only report new peaks).

Examples::

    python scripts/benchmark.py --repeats 2
    python scripts/benchmark.py --dtype bfloat16 --channels-last --repeats 2
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import resource
import sys
import time
from collections.abc import Callable
from pathlib import Path

import torch

from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.runtime import set_tf32

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def _proc_status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _malloc_trim() -> None:
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


class PeakMemory:
    """Peak memory growth (MiB) during a ``with`` block, on CUDA or CPU."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.mib = float("nan")

    def __enter__(self) -> PeakMemory:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._base = torch.cuda.memory_allocated(self.device)
            return self
        gc.collect()
        _malloc_trim()  # hand freed heap back to the OS so the baseline RSS is live memory only
        self._hwm = False
        try:  # "5" resets the peak RSS (VmHWM) to the current RSS (Linux >= 4.0)
            Path("/proc/self/clear_refs").write_text("5")
            self._hwm = _proc_status_kib("VmHWM") is not None
        except OSError:
            pass
        self._base = _proc_status_kib("VmRSS") if self._hwm else self._maxrss_kib()
        return self

    @staticmethod
    def _maxrss_kib() -> int:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        return rss // 1024 if sys.platform == "darwin" else rss  # bytes on macOS, KiB on Linux

    def __exit__(self, *exc: object) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.mib = (torch.cuda.max_memory_allocated(self.device) - self._base) / 2**20
        else:
            peak = _proc_status_kib("VmHWM") if self._hwm else self._maxrss_kib()
            self.mib = max(peak - self._base, 0) / 1024


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _episode(batch: int, shots: int, size: int, device: torch.device, channels_last: bool) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(batch, 3, size, size, generator=g)
    s_x = torch.randn(batch, shots, 3, size, size, generator=g)
    s_y = torch.zeros(batch, shots, size, size, dtype=torch.long)
    s_y[..., size // 5 : size // 2, size // 3 : 2 * size // 3] = 1  # a box, ~10% of the image
    y_m = torch.zeros(batch, size, size, dtype=torch.long)
    y_m[:, size // 4 : size // 2, size // 4 : size // 2] = 1
    ep = {
        "x": x,
        "s_x": s_x,
        "s_y": s_y,
        "y_m": y_m,
        "y_b": torch.randint(0, 16, (batch, size, size), generator=g),
        "cat_idx": torch.zeros(batch, dtype=torch.long),
    }
    ep = {k: v.to(device) for k, v in ep.items()}
    if channels_last:
        ep["x"] = ep["x"].contiguous(memory_format=torch.channels_last)
    return ep


def _time(fn: Callable[[], None], repeats: int, device: torch.device) -> tuple[float, float]:
    """(mean seconds over ``repeats`` after one warm-up call, peak memory growth in MiB)."""
    with PeakMemory(device) as mem:
        fn()
        _sync(device)
        start = time.perf_counter()
        for _ in range(repeats):
            fn()
        _sync(device)
        elapsed = (time.perf_counter() - start) / repeats
    return elapsed, mem.mib


def _build(shots: int, device: torch.device, channels_last: bool) -> MSANet:
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet50", shots=shots)).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model


def run(args: argparse.Namespace) -> list[tuple[str, float, float]]:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]

    def autocast() -> contextlib.AbstractContextManager:
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    rows = []
    for shots in (1, 5):
        model = _build(shots, device, args.channels_last).eval()
        ep = _episode(1, shots, args.size, device, args.channels_last)

        def eval_step(model: MSANet = model, ep: dict = ep) -> None:
            with torch.no_grad(), autocast():
                model(ep["x"], ep["s_x"], ep["s_y"])

        sec, mib = _time(eval_step, args.repeats, device)
        rows.append((f"eval forward, {shots}-shot, batch 1", sec, mib))
        del model

    model = _build(1, device, args.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    for batch in (1, 2):
        ep = _episode(batch, 1, args.size, device, args.channels_last)

        def train_step(ep: dict = ep) -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = model(ep["x"], ep["s_x"], ep["s_y"], ep["y_m"], ep["y_b"], ep["cat_idx"])
            (out.main_loss + out.aux_loss1 + out.aux_loss2).backward()
            opt.step()

        sec, mib = _time(train_step, args.repeats, device)
        rows.append((f"train step, 1-shot, batch {batch}", sec, mib))
    return rows


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=473, help="image side in pixels (473)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model + inputs")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after one warm-up")
    parser.add_argument("--no-tf32", action="store_true",
                        help="CUDA: plain IEEE float32 matmul/conv (the training default is TF32)")
    args = parser.parse_args(argv)
    set_tf32(not args.no_tf32)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if args.size < 33:
        parser.error("--size must be >= 33 (the backbone downsamples by 8)")
    rows = run(args)
    mem_kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS growth"
    print(
        f"ResNet-50 MSANet (random weights), {args.size}x{args.size}, device {args.device}, "
        f"{args.dtype}{', channels_last' if args.channels_last else ''}"
        f"{', TF32' if args.device.startswith('cuda') and not args.no_tf32 else ''}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, mean of {args.repeats}\n"
    )
    print(f"| measurement | time (s) | {mem_kind} (MiB) |")
    print("|---|---:|---:|")
    for name, sec, mib in rows:
        print(f"| {name} | {sec:.3f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
