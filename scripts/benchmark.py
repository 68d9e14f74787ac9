"""Time MSANet (randomly initialised ResNet-50) and print a markdown table.

Measures, at ``--size`` pixels:
- eval forward per 1-shot and 5-shot episode (batch 1, inference_mode), of the evaluation copy
  that msanet-eval runs (:func:`~msanet_lib.model.inference.prepare_for_inference`; the model
  as trained with ``--unprepared``);
- train step = forward + backward of the trainable part + an SGD step, for a batch of 1 and 2
  1-shot episodes, of the training copy that msanet-train's stage 2 runs
  (:func:`~msanet_lib.model.inference.prepare_for_training`; the model as written with
  ``--unprepared``);
- peak memory of each measurement: CUDA ``max_memory_allocated`` on a GPU; on CPU the growth of
  the process's peak resident set (Linux ``VmHWM``, reset through ``/proc/self/clear_refs``;
  elsewhere the growth of ``ru_maxrss``, which can only report new peaks).

With ``--authors-code PATH`` (a checkout of github.com/AIVResearch/MSANet, kept outside this
project) it instead times the eval forward of the authors' ResNet-50 MSANet against ours,
interleaved in one process (authors, ours, authors, ours, ...), on the same weights (the
deterministic recipe of tests/fixtures/authors_golden/README.md) and the same 1-shot episode, and
prints the median time of each, its ratio to the authors', the floating-point operations of its
convolutions and matrix products (``torch.utils.flop_counter``) and the rate they ran at per
second of CPU time. Ours runs as trained and as the evaluation copy that ``msanet-eval`` runs
(:func:`~msanet_lib.model.inference.prepare_for_inference`: BatchNorm folded, factorised base
learner, channels_last on CPU) under ``torch.inference_mode``; the authors' model runs under
``torch.no_grad`` (their test.py keeps autograd on). ``--train-step`` adds a stage-2 training
step of both (their model frozen by its own ``freeze_modules``, as their train.py does; ours as
written and the training copy that ``msanet-train`` runs). Memory there is the peak RSS growth
of one call, each variant in a fresh process with a fixed malloc mmap threshold (see
:func:`_fresh_process_memory`).

Examples::

    python scripts/benchmark.py --repeats 2
    python scripts/benchmark.py --dtype bfloat16 --channels-last --repeats 2
    python scripts/benchmark.py --authors-code ../MSANet --threads 2 --repeats 5
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import ctypes
import gc
import importlib
import math
import os
import resource
import statistics
import subprocess
import sys
import time
import types
import zlib
from collections.abc import Callable
from pathlib import Path
from unittest import mock

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from msanet_lib.model.inference import prepare_for_inference, prepare_for_training
from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.runtime import cpu_has_bf16_units, set_tf32

GOLDEN = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "authors_golden"

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


def run(args: argparse.Namespace) -> list[tuple[str, float, float, int]]:
    device = torch.device(args.device)
    dtype = DTYPES[args.dtype]

    def autocast() -> contextlib.AbstractContextManager:
        if dtype == torch.float32:
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=dtype)

    rows = []
    for shots in (1, 5):
        model = _build(shots, device, args.channels_last).eval()
        if not args.unprepared:  # what msanet-eval runs
            model = prepare_for_inference(
                model, channels_last=args.channels_last,
                autocast_dtype=None if dtype == torch.float32 else dtype)
        for batch in args.eval_batches:
            ep = _episode(batch, shots, args.size, device, args.channels_last)

            def eval_step(model: MSANet = model, ep: dict = ep) -> None:
                with torch.inference_mode(), autocast():
                    model(ep["x"], ep["s_x"], ep["s_y"])

            sec, mib = _time(eval_step, args.repeats, device)
            rows.append((f"eval forward, {shots}-shot, batch {batch}", sec, mib, batch))
        del model

    model = _build(1, device, args.channels_last).train()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=1e-3, momentum=0.9)
    if not args.unprepared:  # what msanet-train's stage 2 runs (runtime.fast_frozen)
        model = prepare_for_training(model)
    for batch in args.train_batches:
        ep = _episode(batch, 1, args.size, device, args.channels_last)

        def train_step(ep: dict = ep) -> None:
            opt.zero_grad(set_to_none=True)
            with autocast():
                out = model(ep["x"], ep["s_x"], ep["s_y"], ep["y_m"], ep["y_b"], ep["cat_idx"])
            (out.main_loss + out.aux_loss1 + out.aux_loss2).backward()
            opt.step()

        sec, mib = _time(train_step, args.repeats, device)
        rows.append((f"train step, 1-shot, batch {batch}", sec, mib, batch))
    return rows


# --------------------------------------------------------------------------- against the authors


def shared_weights(keys: list[str], shapes: dict[str, torch.Size], vectors: dict) -> dict:
    """The golden fixtures' weights (tests/fixtures/authors_golden/README.md) for ``keys``.

    Entries with >= 2 dimensions come from a generator seeded with the crc32 of the key; the
    BatchNorm statistics and biases are the fixture's calibrated ``vectors``.
    """
    state = {}
    for key in keys:
        if key in vectors:
            state[key] = vectors[key].clone()
            continue
        gen = torch.Generator().manual_seed(zlib.crc32(key.encode("utf-8")))
        u = torch.rand(shapes[key], generator=gen, dtype=torch.float64)
        state[key] = ((2 * u - 1) * math.sqrt(6 / math.prod(shapes[key][1:]))).to(torch.float32)
    return state


def authors_model(code: Path, shots: int) -> nn.Module:
    """The authors' ResNet-50 PASCAL MSANet, built from their unmodified ``model/`` folder.

    Their constructor reads ImageNet and PSPNet weight files and their ``util.util`` imports
    plotting and OpenCV packages that inference never uses: the imports get empty stand-ins and
    the weight files the authors' own freshly built PSPNet state, to be overwritten by
    :func:`shared_weights`.
    """
    if not (code / "model" / "MSANet.py").is_file():
        raise SystemExit(f"--authors-code {code}: no model/MSANet.py there; pass a checkout of "
                         "github.com/AIVResearch/MSANet")
    sys.path.insert(0, str(code))
    try:
        importlib.import_module("cv2")
    except ImportError:
        sys.modules["cv2"] = types.ModuleType("cv2")  # imported, never called by the model
    util = types.ModuleType("util.util")  # training helpers only (needs seaborn, scipy, ...)
    util.get_train_val_set = None
    sys.modules.setdefault("util.util", util)
    authors_msanet = importlib.import_module("model.MSANet")
    authors_pspnet = importlib.import_module("model.PSPNet")
    args = types.SimpleNamespace(
        layers=50, vgg=False, zoom_factor=8, shot=shots, data_set="pascal", split=0,
        ignore_label=255, print_freq=10, low_fea="layer2", kshot_trans_dim=2)

    def fake_load(path: object, *a: object, **k: object) -> dict:
        if "PSPNet" in str(path):  # the stage-1 checkpoint: any state with the right keys
            return {"state_dict": authors_pspnet.OneModel(args).state_dict()}
        return {}  # ImageNet weights, loaded with strict=False

    with mock.patch("torch.load", fake_load), contextlib.redirect_stdout(sys.stderr):
        model = authors_msanet.OneModel(args)
    return model.eval()


def _setup_against_authors(args: argparse.Namespace) -> tuple[nn.Module, MSANet, dict]:
    """The authors' model and ours (eval mode) on the same weights, and the 1-shot episode."""
    torch.manual_seed(0)
    theirs = authors_model(Path(args.authors_code).resolve(), 1)
    fixture = torch.load(GOLDEN / "msanet_resnet50_1shot.pt")
    shapes = {k: v.shape for k, v in theirs.state_dict().items()}
    weights = shared_weights(fixture["state_dict_keys"], shapes, fixture["vectors"])
    theirs.load_state_dict(weights)
    ours = MSANet(MSANetConfig(backbone="resnet50", shots=1, num_base_classes=16))
    ours.load_state_dict(weights)
    ours.eval()
    return theirs, ours, _episode(1, 1, args.size, torch.device("cpu"), channels_last=False)


def _eval_variants(theirs: nn.Module, ours: MSANet, ep: dict, args: argparse.Namespace
                   ) -> dict[str, Callable[[], tuple]]:
    """One eval forward of each model, by row name (the first is the reference)."""
    x, s_x, s_y = ep["x"], ep["s_x"], ep["s_y"]
    x_cl = x.contiguous(memory_format=torch.channels_last)
    prepared = prepare_for_inference(ours, channels_last=True)
    prepared_nchw = prepare_for_inference(ours)

    def authors_fp32() -> tuple:
        with torch.no_grad():
            return theirs(x, s_x, s_y, None, None)

    def ours_plain() -> tuple:
        with torch.no_grad():
            return ours(x, s_x, s_y)

    def ours_fp32() -> tuple:
        with torch.inference_mode():
            return prepared(x_cl, s_x, s_y)

    def ours_fp32_nchw() -> tuple:
        with torch.inference_mode():
            return prepared_nchw(x, s_x, s_y)

    variants: dict[str, Callable[[], tuple]] = {
        "authors, float32": authors_fp32,
        "ours, float32, model as trained": ours_plain,
        "ours, float32, evaluation copy, NCHW": ours_fp32_nchw,
        "ours, float32, evaluation copy, channels_last (msanet-eval)": ours_fp32,
    }
    if cpu_has_bf16_units() or args.emulated_bf16:
        prepared_bf16 = prepare_for_inference(ours, channels_last=True,
                                              autocast_dtype=torch.bfloat16)

        def ours_bf16() -> tuple:
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                return prepared_bf16(x_cl, s_x, s_y)

        variants["ours, bfloat16 autocast, evaluation copy, channels_last "
                 "(msanet-eval --amp bf16)"] = ours_bf16
    return variants


def _train_variants(theirs: nn.Module, ours: MSANet, ep: dict) -> dict[str, Callable[[], None]]:
    """One stage-2 training step (forward, backward of the trainable part, SGD) of each model
    on the same 1-shot episode, BatchNorm in eval mode (fix_bn) in both, by row name."""
    cat = torch.zeros(1, dtype=torch.long)
    x, s_x, s_y, y_m, y_b = ep["x"], ep["s_x"], ep["s_y"], ep["y_m"], ep["y_b"]
    # As their train.py does after building the model: without it their base learner (run
    # outside no_grad in their forward) would get gradients and momentum it never gets in training.
    theirs.freeze_modules(theirs)

    def stepper(model: nn.Module, forward: Callable[[], torch.Tensor]) -> Callable[[], None]:
        model.train()
        for module in model.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
        opt = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1e-9,
                              momentum=0.9)

        def step() -> None:
            opt.zero_grad(set_to_none=True)
            forward().backward()
            opt.step()
        return step

    def theirs_loss() -> torch.Tensor:
        _, main, aux1, aux2 = theirs(x, s_x, s_y, y_m, y_b, [cat])
        return main + aux1 + aux2

    def ours_loss() -> torch.Tensor:
        out = ours(x, s_x, s_y, y_m, y_b, cat)
        return out.main_loss + out.aux_loss1 + out.aux_loss2

    ours.train()
    copy_ = prepare_for_training(ours)  # what msanet-train runs: factorised, box

    def copy_loss() -> torch.Tensor:
        out = copy_(x, s_x, s_y, y_m, y_b, cat)
        return out.main_loss + out.aux_loss1 + out.aux_loss2

    return {"authors, float32": stepper(theirs, theirs_loss),
            "ours, float32, model as written": stepper(ours, ours_loss),
            "ours, float32, training copy (msanet-train)": stepper(copy_, copy_loss)}


def _memory_child(args: argparse.Namespace) -> None:
    """``--memory-of KIND:I``: peak RSS growth (MiB) of one call of variant I of KIND ("eval" or
    "train"), after one warm-up call, in this fresh process; printed on the last line."""
    kind, index = args.memory_of.split(":")
    theirs, ours, ep = _setup_against_authors(args)
    if kind == "eval":
        variants: dict = _eval_variants(theirs, ours, ep, args)
    else:
        variants = _train_variants(theirs, ours, ep)
    fn = list(variants.values())[int(index)]
    fn()
    with PeakMemory(torch.device("cpu")) as mem:
        fn()
    print(f"{mem.mib:.1f}")


def _fresh_process_memory(kind: str, names: list[str], args: argparse.Namespace
                          ) -> dict[str, float]:
    """Peak RSS growth of one call of each variant, each in its own fresh process.

    In one process the numbers depend on what ran before (two runs of the same training step
    measured 870 and 1002 MiB), so every variant gets the same history: the models built, one
    warm-up call, the measured one. glibc's malloc also raises its mmap threshold as large
    blocks are freed and then serves them from a heap it trims in its own time: the same eval
    call grew the RSS by 1031 MiB in one fresh process and by 908 in the next. The children run
    with a fixed threshold (``MALLOC_MMAP_THRESHOLD_=65536``: blocks of 64 KiB and more are
    mapped and unmapped with their tensor), so the RSS follows the live memory and repeats to
    0.1 MiB; ``--default-malloc`` measures glibc's default instead.
    """
    env = dict(os.environ)
    if not args.default_malloc:
        env["MALLOC_MMAP_THRESHOLD_"] = "65536"
    memory = {}
    for index, name in enumerate(names):
        cmd = [sys.executable, str(Path(__file__).resolve()), "--authors-code", args.authors_code,
               "--size", str(args.size), "--memory-of", f"{kind}:{index}",
               "--threads", str(torch.get_num_threads())]
        if args.emulated_bf16:
            cmd.append("--emulated-bf16")
        done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
        if done.returncode != 0:
            raise SystemExit(f"memory of {name!r}: the child process failed:\n{done.stderr[-2000:]}")
        memory[name] = float(done.stdout.strip().splitlines()[-1])
    return memory


def run_against_authors(args: argparse.Namespace) -> None:
    """Interleaved eval-forward timing of the authors' model and ours; prints a table."""
    theirs, ours, ep = _setup_against_authors(args)
    x, s_x, s_y = ep["x"], ep["s_x"], ep["s_y"]
    variants = _eval_variants(theirs, ours, ep, args)
    if len(variants) == 4:  # emulated bf16 takes minutes per round and says nothing about units
        print("bfloat16 row skipped: this CPU has no bfloat16 units (--emulated-bf16 times it "
              "anyway; 9.1x the authors' float32 on a 2-core AVX2 EPYC)\n", file=sys.stderr)
    outputs = {name: fn() for name, fn in variants.items()}  # also the warm-up
    flops = {}  # floating-point operations of convolutions and matrix products, per variant
    for name, fn in variants.items():
        with FlopCounterMode(display=False) as counter:
            fn()
        flops[name] = counter.get_total_flops()
    with torch.no_grad():  # the exact function, to put the float32 differences in scale
        exact = copy.deepcopy(theirs).double()(x.double(), s_x.double(), s_y, None, None)
    wall, cpu = _interleaved(variants, args.repeats)
    memory = _fresh_process_memory("eval", list(variants), args)
    print(f"MSANet ResNet-50 eval forward, 1-shot, {args.size}x{args.size}, CPU, torch "
          f"{torch.__version__}, {torch.get_num_threads()} thread(s); golden-fixture weights; "
          f"medians of {args.repeats} interleaved rounds. Ratios are to the authors' float32 "
          "time; 'per round' is the median of the per-round ratios; CPU = process CPU time "
          "(robust to other load with one thread); memory = peak RSS growth of one call after "
          "one warm-up call, each variant in a fresh process"
          f"{' (glibc default malloc)' if args.default_malloc else ' (MALLOC_MMAP_THRESHOLD_=65536)'}"
          ".\n")
    print("| model | wall (s) | ratio | ratio per round | CPU (s) | CPU ratio | GFLOP | GFLOP per CPU s | "
          "memory (MiB) | max abs diff of final / meta / base out vs the authors' float64 |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for name in variants:
        w, w_ratio, w_round, c, c_ratio = _ratios(wall, cpu, name, "authors, float32")
        diffs = " / ".join(f"{(o.double() - g).abs().max().item():.1e}"
                           for o, g in zip(outputs[name], exact))
        print(f"| {name} | {w:.2f} | {w_ratio:.3f} | {w_round:.3f} | {c:.2f} | {c_ratio:.3f} "
              f"| {flops[name] / 1e9:.0f} | {flops[name] / 1e9 / c:.0f} | {memory[name]:.0f} "
              f"| {diffs} |")
    if args.train_step:
        _train_against_authors(theirs, ours, ep, args)


def _interleaved(variants: dict[str, Callable[[], object]], repeats: int
                 ) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and process-CPU seconds of every variant, ``repeats`` interleaved rounds."""
    wall: dict[str, list[float]] = {name: [] for name in variants}
    cpu: dict[str, list[float]] = {name: [] for name in variants}
    for _ in range(repeats):
        for name, fn in variants.items():
            start, start_cpu = time.perf_counter(), time.process_time()
            fn()
            wall[name].append(time.perf_counter() - start)
            cpu[name].append(time.process_time() - start_cpu)
    return wall, cpu


def _ratios(wall: dict[str, list[float]], cpu: dict[str, list[float]], name: str, ref_name: str
            ) -> tuple[float, float, float, float, float]:
    """Median wall, its ratio, the median per-round ratio, median CPU and its ratio."""
    w, c = statistics.median(wall[name]), statistics.median(cpu[name])
    w_ref, c_ref = statistics.median(wall[ref_name]), statistics.median(cpu[ref_name])
    per_round = statistics.median(v / r for v, r in zip(wall[name], wall[ref_name]))
    return w, w / w_ref, per_round, c, c / c_ref


def _train_against_authors(theirs: nn.Module, ours: MSANet, ep: dict, args: argparse.Namespace
                           ) -> None:
    """Interleaved stage-2 training steps of both models (:func:`_train_variants`); a table."""
    variants = _train_variants(theirs, ours, ep)
    flops = {}
    for name, fn in variants.items():
        fn()  # warm-up, allocates the momentum buffers
        with FlopCounterMode(display=False) as counter:
            fn()
        flops[name] = counter.get_total_flops()
    wall, cpu = _interleaved(variants, args.repeats)
    memory = _fresh_process_memory("train", list(variants), args)
    print("\nTraining step (stage 2, 1-shot, batch 1: forward, backward of the trainable part, "
          "SGD with momentum), same episode, interleaved:\n")
    print("| model | wall (s) | ratio | ratio per round | CPU (s) | CPU ratio | GFLOP | "
          "memory (MiB) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name in variants:
        w, w_ratio, w_round, c, c_ratio = _ratios(wall, cpu, name, "authors, float32")
        print(f"| {name} | {w:.2f} | {w_ratio:.3f} | {w_round:.3f} | {c:.2f} | {c_ratio:.3f} "
              f"| {flops[name] / 1e9:.0f} | {memory[name]:.0f} |")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=473, help="image side in pixels (473)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="float32", help="autocast dtype")
    parser.add_argument("--channels-last", action="store_true", help="channels_last model + inputs")
    parser.add_argument("--repeats", type=int, default=5, help="timed calls after one warm-up")
    parser.add_argument("--eval-batches", type=int, nargs="+", default=[1], metavar="B",
                        help="episodes per eval forward, one row each (default 1)")
    parser.add_argument("--train-batches", type=int, nargs="+", default=[1, 2], metavar="B",
                        help="episodes per train step, one row each (default 1 2)")
    parser.add_argument("--no-tf32", action="store_true",
                        help="CUDA: plain IEEE float32 matmul/conv (the training default is TF32)")
    parser.add_argument("--unprepared", action="store_true",
                        help="the model as written, not the evaluation copy (BatchNorm "
                             "folded, factorised base learner) nor the stage-2 training copy "
                             "(factorised base learner, support layer4 box)")
    parser.add_argument("--threads", type=int, default=None,
                        help="CPU threads (default: torch's, usually one per core)")
    parser.add_argument("--emulated-bf16", action="store_true",
                        help="with --authors-code on a CPU without bfloat16 units: time the "
                             "(emulated, very slow) bf16 row anyway")
    parser.add_argument("--train-step", action="store_true",
                        help="with --authors-code: also time a stage-2 training step of both")
    parser.add_argument("--default-malloc", action="store_true",
                        help="with --authors-code: measure memory under glibc's default malloc "
                             "settings (varies from run to run) instead of a fixed mmap threshold")
    parser.add_argument("--memory-of", default=None, help=argparse.SUPPRESS)  # a child's job
    parser.add_argument("--authors-code", default=None, metavar="PATH",
                        help="a checkout of AIVResearch/MSANet: time its eval forward against ours "
                             "(CPU, ResNet-50, 1-shot, interleaved; --repeats rounds)")
    args = parser.parse_args(argv)
    set_tf32(not args.no_tf32)
    if args.repeats < 1:
        parser.error("--repeats must be >= 1")
    if min(args.eval_batches + args.train_batches) < 1:
        parser.error("batch sizes must be >= 1")
    if args.size < 33:
        parser.error("--size must be >= 33 (the backbone downsamples by 8)")
    if args.threads is not None:
        if args.threads < 1:
            parser.error("--threads must be >= 1")
        torch.set_num_threads(args.threads)
    if args.authors_code is not None and args.memory_of is not None:
        _memory_child(args)
        return
    if args.authors_code is not None:
        run_against_authors(args)
        return
    rows = run(args)
    mem_kind = "CUDA max allocated" if args.device.startswith("cuda") else "peak RSS growth"
    print(
        f"ResNet-50 MSANet (random weights), {args.size}x{args.size}, device {args.device}, "
        f"{args.dtype}{', channels_last' if args.channels_last else ''}"
        f"{', TF32' if args.device.startswith('cuda') and not args.no_tf32 else ''}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, mean of {args.repeats}\n"
    )
    print(f"| measurement | time (s) | per episode (ms) | {mem_kind} (MiB) |")
    print("|---|---:|---:|---:|")
    for name, sec, mib, batch in rows:
        print(f"| {name} | {sec:.3f} | {1000 * sec / batch:.1f} | {mib:.0f} |")


if __name__ == "__main__":
    main()
