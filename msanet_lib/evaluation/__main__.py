"""``msanet-eval``: score a trained MSANet with the authors' test protocol.

Examples::

    msanet-eval --checkpoint runs/toy/fold0/meta_1shot/best.pth          # toy benchmark
    msanet-eval --checkpoint 'runs/pascal_resnet50/fold{fold}/meta_1shot/best.pth' \\
        --benchmark pascal --folds 0 1 2 3 --device cuda --amp bf16 --json pascal.json
    msanet-eval --authors --backbone resnet50 --shots 1 --benchmark pascal \\
        --checkpoint 'weights/pascal/split{fold}/resnet50/best.pth' --folds 0 1 2 3

    msanet-eval --checkpoint best.pth --protocol hsnet      # HSNet's 400 x 400, seed 0
    msanet-eval --checkpoint best.pth --lists lists/pascal/fss_list   # the authors' val lists
    msanet-eval --checkpoint best.pth --feature-cache 512   # each image encoded once, same scores

``{fold}`` in ``--checkpoint`` is replaced by each fold (a model is trained per fold).
Prints, per fold, a table over seeds (mIoU, FB-IoU, pIoU, the meta-only "_m" scores and
the base learner's mIoU), then the mean over folds.
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from torch import nn

from msanet_lib.backbones.state_dicts import read_weights_file
from msanet_lib.evaluation.feature_cache import MIB, CacheStats
from msanet_lib.evaluation.protocol import EPISODES, SEEDS, EvalResult, evaluate
from msanet_lib.runtime import (
    atomic_write_text,
    run_command,
    select_device,
    set_tf32,
    slow_amp_note,
)
from msanet_lib.utils import fast_mode

FAST_EPISODES = 40
_OUR_FORMATS = ("msanet-train-checkpoint", "msanet-export")
_BASE_CLASSES = {"pascal": 16, "coco": 61, "toy": 16}


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Reads one of our checkpoints: ``{'model_config' or 'config', 'state_dict', ...}``.

    Accepts a training checkpoint or an export (``msanet_lib.training.checkpoint``), or a
    plain dict ``{"config": <MSANetConfig fields>, "state_dict": ...}``. Returns a dict
    with ``model_config`` (MSANetConfig fields), ``state_dict`` and ``train_config``
    (the training config, or ``{}``).
    """
    if not path.is_file():
        raise FileNotFoundError(
            f"--checkpoint {path} does not exist. Train one with `msanet-train` (it writes "
            "<out>/meta_<K>shot/best.pth) or pass the path of a downloaded checkpoint."
        )
    ckpt = read_weights_file(path, how_to_get="For the authors' released files add --authors.")
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ValueError(
            f"--checkpoint {path} has no 'state_dict'. For the authors' released files add "
            "--authors --backbone ... --shots ...; otherwise pass a msanet_lib checkpoint."
        )
    if ckpt.get("stage") == "base":
        raise ValueError(
            f"--checkpoint {path} is a stage-1 base learner (PSPNet); msanet-eval scores the "
            "stage-2 MSANet: pass <out>/meta_<K>shot/best.pth."
        )
    if ckpt.get("format") in _OUR_FORMATS:
        model_config, train_config = ckpt.get("model_config"), ckpt.get("config") or {}
    else:
        model_config, train_config = ckpt.get("config"), {}
    if not isinstance(model_config, dict):
        if any(str(k).split(".", 1)[-1].startswith("down_query") for k in ckpt["state_dict"]):
            raise ValueError(
                f"--checkpoint {path} looks like one of the authors' MSANet checkpoints (no "
                "model config, their key names): add --authors, with --benchmark pascal|coco.")
        raise ValueError(f"--checkpoint {path} holds no model config; it cannot be rebuilt.")
    return {"model_config": model_config, "state_dict": ckpt["state_dict"],
            "train_config": train_config}


_AUTHORS_NAME = re.compile(r"(?P<backbone>resnet50|resnet101|vgg)_(?P<shots>\d+)_(?P<fold>[0-3])_[\d.]+\.pth?$")
_AUTHORS_PICKLE = re.compile(r"(?P<benchmark>pascal|coco)_split(?P<fold>[0-3])_(?P<backbone>resnet50|resnet101|vgg)_")
_BACKBONE_NAMES = {"resnet50": "resnet50", "resnet101": "resnet101", "vgg": "vgg16_bn"}


def authors_file_hints(path: Path) -> dict[str, Any]:
    """What the authors' naming says about a checkpoint: benchmark, fold, backbone, shots.

    Their configs name MSANet files ``{backbone}_{shot}_{split}_{mIoU}.pth`` (e.g.
    ``resnet101_5_0_0.7415.pth``), their first release ``pascal_split0_resnet50_0.6925.pt``, and
    their folders ``exp/{pascal|coco}/MSANet/split{s}/{backbone}/snapshot/``. Returns only the keys
    the path reveals.
    """
    hints: dict[str, Any] = {}
    for part in path.parts[:-1]:
        if part in ("pascal", "coco"):
            hints["benchmark"] = part
        elif re.fullmatch(r"split[0-3]", part):
            hints["fold"] = int(part[-1])
        elif part in _BACKBONE_NAMES:
            hints["backbone"] = _BACKBONE_NAMES[part]
    for pattern in (_AUTHORS_NAME, _AUTHORS_PICKLE):
        match = pattern.search(path.name)
        if match:
            found = match.groupdict()
            hints["backbone"] = _BACKBONE_NAMES[found.pop("backbone")]
            hints.update({k: v if k == "benchmark" else int(v) for k, v in found.items()})
    return hints


def _authors_model(args: argparse.Namespace, path: Path) -> tuple[nn.Module, dict]:
    """An --authors file: settings from the flags, else from the authors' naming; a report."""
    from msanet_lib.model.checkpoints import load_authors_checkpoint
    from msanet_lib.model.msanet import MSANet, MSANetConfig

    if not path.is_file():
        raise FileNotFoundError(f"--checkpoint {path} does not exist.")
    hints = authors_file_hints(path)
    chosen: dict[str, Any] = {}
    origin: dict[str, str] = {}
    for key, flag, default in (("benchmark", args.benchmark, None), ("backbone", args.backbone, None),
                               ("shots", args.shots, 1)):
        value = flag if flag is not None else hints.get(key, default)
        origin[key] = "flag" if flag is not None else ("file name" if key in hints else "default")
        if value is None:
            raise ValueError(
                f"--authors: the path {path} does not say the {key}; pass --{key} "
                + ("pascal or coco (toy for our own models saved in the authors' format)."
                   if key == "benchmark" else "resnet50, resnet101 or vgg16_bn."))
        chosen[key] = value
    config = MSANetConfig(backbone=chosen["backbone"], shots=int(chosen["shots"]),
                          num_base_classes=_BASE_CLASSES[chosen["benchmark"]])
    model = MSANet(config)
    report = load_authors_checkpoint(model, path, allow_pickle=args.allow_pickle)
    stripped = ", ".join(repr(p) for p in report.prefixes_removed) or "none"
    print(f"--authors: {path}: {len(report.loaded)} tensors loaded into MSANet, epoch "
          f"{report.epoch if report.epoch is not None else 'not stored'}, prefixes stripped: "
          f"{stripped}; " + ", ".join(f"{k} {chosen[k]} ({origin[k]})" for k in chosen)
          + (f", fold {hints['fold']} (file name)" if "fold" in hints else ""), file=sys.stderr)
    return model, {"benchmark": chosen["benchmark"], "fold": hints.get("fold")}


def build_model(args: argparse.Namespace, path: Path) -> tuple[nn.Module, dict]:
    """The model of ``path`` and the training config stored with it (``{}`` if none)."""
    from msanet_lib.model.msanet import msanet_for_shots

    if args.authors:
        return _authors_model(args, path)
    ckpt = read_checkpoint(path)
    fields = dict(ckpt["model_config"])
    model = msanet_for_shots(fields, ckpt["state_dict"], args.shots)
    return model, ckpt["train_config"]


# The named protocols: the authors' (BAM/MSANet test.py) and HSNet's (docs/protocol.md says
# which of HSNet's choices --protocol hsnet reproduces and which not).
PROTOCOLS: dict[str, dict[str, Any]] = {
    "authors": {"seeds": list(SEEDS), "test_size": None},  # None: 473 / 641 / toy 128
    "hsnet": {"seeds": [0], "test_size": 400},             # utils.fix_randseed(0); img_size 400
}


def build_dataset(benchmark: str, root: str | None, fold: int, shots: int,
                  test_size: int | None = None, *, protocol: str = "authors",
                  lists: str | None = None, base_annotations: str | None = None) -> Any:
    """The fold's validation episodes (``FewShotDataset(split="val")``) at ``test_size``.

    ``protocol="hsnet"`` stretches images and labels to ``test_size x test_size`` and scores
    against the label nearest-resized to that size; ``lists`` is the authors' fss_list folder
    (its ``val/`` files are read); ``base_annotations`` their base-label folder.
    """
    from msanet_lib.data.datasets import FewShotDataset
    from msanet_lib.data.lists import authors_list_dir
    from msanet_lib.data.transforms import hsnet_test_transform

    list_dir = authors_list_dir(lists, "val", fold, "--lists") if lists is not None else None
    hsnet = protocol == "hsnet"
    size = test_size or (PROTOCOLS["hsnet"]["test_size"] if hsnet else None)
    # progress: the first use of a real benchmark scans every label once (cached afterwards).
    return FewShotDataset(root, benchmark=benchmark, fold=fold, split="val", shots=shots,
                          image_size=size, progress=True, list_dir=list_dir,
                          base_data_root=base_annotations,
                          transform=hsnet_test_transform(size) if hsnet else None,
                          score_size=size if hsnet else None)


def trained_size(train_config: dict[str, Any]) -> int | None:
    """The image size stage 2 trained at, from the checkpoint's training config (None if absent)."""
    size = (train_config.get("meta") or {}).get("image_size")
    return int(size) if size else None


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="msanet-eval",
        description="Evaluate MSANet with the authors' protocol (1000 episodes x 5 seeds).",
    )
    p.add_argument("--checkpoint", required=True,
                   help="checkpoint file; '{fold}' is replaced by each fold")
    p.add_argument("--authors", action="store_true",
                   help="the file is one of the authors' released MSANet checkpoints")
    p.add_argument("--allow-pickle", action="store_true",
                   help="--authors: accept a whole pickled model (runs code from the file; "
                        "only for files you trust)")
    p.add_argument("--backbone", default=None,
                   help="backbone of an --authors checkpoint (resnet50, resnet101, vgg16_bn); "
                        "default: read from the authors' file name")
    p.add_argument("--shots", type=int, default=None, help="K support images (default: model's)")
    p.add_argument("--benchmark", default=None, choices=("toy", "pascal", "coco"),
                   help="default: the checkpoint's, else toy; with --authors: required unless "
                        "the path names it (exp/pascal/...)")
    p.add_argument("--data-root", default=None,
                   help="dataset folder (default: data/ or $MSANET_DATA)")
    p.add_argument("--folds", type=int, nargs="+", default=None,
                   help="default: the checkpoint's fold, else 0")
    p.add_argument("--protocol", choices=tuple(PROTOCOLS), default="authors",
                   help="authors (default): BAM/MSANet test.py, long side to the test size, "
                        "scored at the original label size, 5 seeds; hsnet: HSNet's test.py "
                        "choices, both sides to 400 (aspect ratio not kept), scored against the "
                        "label nearest-resized to 400 x 400, seed 0 (docs/protocol.md)")
    p.add_argument("--test-size", type=int, default=None,
                   help="square test canvas in pixels (default: the authors' 473 for PASCAL, 641 "
                        "for COCO; 128 for toy; 400 with --protocol hsnet); the training size "
                        "is shown beside it")
    p.add_argument("--episodes", type=int, default=EPISODES)
    p.add_argument("--seeds", type=int, nargs="+", default=None,
                   help="one evaluation per seed (default: the protocol's, "
                        f"{' '.join(map(str, SEEDS))} for authors, 0 for hsnet)")
    p.add_argument("--lists", default=None, metavar="DIR",
                   help="the authors' fss_list folder: its val/data_list_<fold>.txt and "
                        "sub_class_file_list_<fold>.txt are the queries and supports (default: "
                        "the checkpoint's data.lists, else lists built from the dataset)")
    p.add_argument("--base-annotations", default=None, metavar="DIR",
                   help="the authors' base labels (<DIR>/val/<fold>/) for the base learner's "
                        "mIoU (default: the checkpoint's data.base_annotations, else remapped)")
    p.add_argument("--fast", action="store_true",
                   help=f"quick check: {FAST_EPISODES} episodes, first seed only "
                        "(also MSANET_FAST=1)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1, mps")
    p.add_argument("--amp", default=None, choices=("bf16", "fp16"), help="autocast dtype")
    p.add_argument("--channels-last", action=argparse.BooleanOptionalAction, default=None,
                   help="channels_last memory format (default: on for CPU, where it is faster)")
    p.add_argument("--tf32", action=argparse.BooleanOptionalAction, default=True,
                   help="CUDA: float32 matrix products and convolutions on TF32 tensor cores, as "
                        "in training (runtime.tf32); --no-tf32 for IEEE float32")
    p.add_argument("--no-fold-bn", dest="fold_bn", action="store_false",
                   help="keep BatchNorm separate instead of folding it into the convolutions "
                        "(same results up to float rounding, slower)")
    p.add_argument("--support-layer4-box", action=argparse.BooleanOptionalAction, default=None,
                   help="compute the supports' layer4 only on the box their masks reach (same "
                        "results up to float rounding; default: for layer4 stages of 1024+ "
                        "channels, where it is faster; never with --feature-cache)")
    p.add_argument("--no-factorise-base-learner", dest="factorise_base_learner",
                   action="store_false",
                   help="run the base learner's first convolution on the upsampled PPM branches "
                        "as written (same results up to float rounding, slower)")
    p.add_argument("--batch-size", type=int, default=1, help="episodes per forward pass")
    p.add_argument("--workers", type=int, default=0, help="DataLoader workers")
    p.add_argument("--feature-cache", type=float, default=0, metavar="MIB",
                   help="encode each image once and keep its backbone features in an LRU cache "
                        "of MIB mebibytes on the device, shared by the seeds (same scores; about "
                        "258 MB per image for ResNet-50 at 473 px in float32, half in bf16); "
                        "default 0 = off")
    p.add_argument("--json", type=Path, default=None, help="write all results to this file")
    p.add_argument("--debug", action="store_true", help="show the traceback of an error")
    return p.parse_args(argv)


def protocol_note(protocol: str, seeds_given: bool) -> str:
    """The header's words for the protocol in use."""
    if protocol == "hsnet":
        note = ("HSNet protocol: stretched to a square, scored against the nearest-resized "
                "label (HSNet's fixed pair list is not reproduced")
        return note + ("; --seeds instead of its seed 0)" if seeds_given else ")")
    return "authors' protocol: long side resized, scored at the original label size"


def _fmt(value: float) -> str:
    return "-" if math.isnan(value) else f"{100 * value:.2f}"


def summary_table(results: dict[int, EvalResult]) -> str:
    """One row per fold (mean and best over seeds), then the mean over folds."""
    lines = ["| fold | mIoU (mean) | mIoU (best) | FB-IoU (mean) | FB-IoU (best) | mIoU_m (mean) |",
             "|---|---|---|---|---|---|"]
    rows = []
    for fold, r in results.items():
        row = [r.mean("miou"), r.best("miou"), r.mean("fb_iou"), r.best("fb_iou"),
               r.mean("miou_meta")]
        rows.append(row)
        lines.append(f"| {fold} | " + " | ".join(_fmt(v) for v in row) + " |")
    if len(rows) > 1:
        means = [sum(col) / len(col) for col in zip(*rows)]
        lines.append("| **mean** | " + " | ".join(_fmt(v) for v in means) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    return run_command("msanet-eval", lambda: run(args), debug=args.debug)


def check_args(args: argparse.Namespace) -> None:
    """Every argument checked before any work starts."""
    if args.test_size is not None and args.test_size < 17:
        raise ValueError(f"--test-size {args.test_size}: use a size of at least 17 px (the "
                         "authors test at 473).")
    for name in ("episodes", "batch_size"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be at least 1.")
    if args.workers < 0:
        raise ValueError("--workers must be 0 or more.")
    if not math.isfinite(args.feature_cache) or args.feature_cache < 0:
        raise ValueError(f"--feature-cache {args.feature_cache:g}: give the cache's size in MiB "
                         "(0 = off).")
    if args.folds is not None and any(not 0 <= f <= 3 for f in args.folds):
        raise ValueError(f"--folds {' '.join(map(str, args.folds))}: folds are 0, 1, 2 and 3.")
    if args.json is not None and args.json.is_dir():
        raise ValueError(f"--json {args.json} is a folder; pass a file name.")


def data_options(args: argparse.Namespace, train_config: dict[str, Any]) -> dict[str, Any]:
    """``build_dataset``'s protocol and list options: the flags, else what the checkpoint was
    trained with (its config's ``data:`` section), else the defaults."""
    data = train_config.get("data") or {}
    base = args.base_annotations or data.get("base_annotations")
    return {"protocol": args.protocol, "lists": args.lists or data.get("lists"),
            "base_annotations": None if base in (None, "on_the_fly") else base}


def run(args: argparse.Namespace) -> int:
    check_args(args)
    seeds_given = args.seeds is not None
    episodes = args.episodes
    seeds = list(args.seeds) if seeds_given else list(PROTOCOLS[args.protocol]["seeds"])
    if args.fast or fast_mode():
        episodes, seeds = min(episodes, FAST_EPISODES), seeds[:1]
    device = select_device(args.device)
    set_tf32(args.tf32)
    if note := slow_amp_note(device, args.amp):
        print(f"msanet-eval: warning: {note}", file=sys.stderr)
    template = args.checkpoint
    folds = args.folds
    if folds is not None and len(folds) > 1 and "{fold}" not in template:
        raise ValueError(
            f"--folds {' '.join(map(str, folds))} needs one checkpoint per fold: put '{{fold}}' "
            f"in --checkpoint (e.g. runs/pascal_resnet50/fold{{fold}}/meta_1shot/best.pth)."
        )
    results: dict[int, EvalResult] = {}
    for fold in folds if folds is not None else [None]:
        path = Path(template.replace("{fold}", str(fold if fold is not None else 0)))
        model, train_config = build_model(args, path)
        benchmark = args.benchmark or train_config.get("benchmark") or "toy"
        if fold is None and args.authors and train_config.get("fold") is None:
            raise ValueError(f"--authors: the path {path} does not say the fold; pass --folds N.")
        fold_used = fold if fold is not None else int(train_config.get("fold") or 0)
        shots = int(model.config.shots)
        root = args.data_root or train_config.get("data_root")
        options = data_options(args, train_config)
        dataset = build_dataset(benchmark, root, fold_used, shots, args.test_size, **options)
        trained = trained_size(train_config)
        print(f"== {benchmark} fold {fold_used}, {shots}-shot, {path} ({episodes} episodes x "
              f"{len(seeds)} seeds on {device}); test size {dataset.image_size} px, trained at "
              f"{f'{trained} px' if trained else 'an unrecorded size'}; "
              f"{protocol_note(args.protocol, seeds_given)}; val lists: "
              f"{options['lists'] or 'built from the dataset'}; training regime: "
              f"{(train_config.get('data') or {}).get('regime', 'not recorded')}",
              file=sys.stderr)
        result = evaluate(
            model, dataset, episodes, seeds, device, args.amp,
            channels_last=args.channels_last, fold_bn=args.fold_bn,
            factorise_base_learner=args.factorise_base_learner,
            support_layer4_box=args.support_layer4_box, batch_size=args.batch_size,
            num_workers=args.workers, feature_cache_bytes=int(args.feature_cache * MIB),
        )
        result.benchmark, result.fold, result.shots = benchmark, fold_used, shots
        result.info["checkpoint"] = str(path)
        result.info.update(protocol=args.protocol, test_size=dataset.image_size,
                           lists=options["lists"], base_annotations=options["base_annotations"])
        results[fold_used] = result
        if result.info.get("feature_cache"):
            print(CacheStats.from_dict(result.info["feature_cache"]).summary(), file=sys.stderr)
        print(result.to_markdown() + "\n")
    print(summary_table(results))
    if args.json is not None:
        payload = {"folds": {str(f): r.to_dict() for f, r in results.items()}}
        atomic_write_text(args.json, json.dumps(payload, indent=1, allow_nan=False))
        print(f"results written to {args.json}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
