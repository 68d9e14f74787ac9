"""Training configuration: YAML files validated into dataclasses.

A config file (``msanet_lib/configs/<name>.yaml``) has one section per concern:

- top level: ``benchmark``, ``fold``, ``shots``, ``seed``, ``data_root``, ``out``;
- ``model``: the :class:`~msanet_lib.model.msanet.MSANetConfig` fields (``shots`` is copied from the
  top level, so it is given once);
- ``pretrain``: stage 0, the toy world's generic pretraining (:class:`PretrainStageConfig`);
- ``base``: stage 1, the PSPNet base learner (:class:`BaseStageConfig`);
- ``meta``: stage 2, MSANet meta-training (:class:`MetaStageConfig`);
- ``data``: which episode lists and base labels the datasets read (:class:`DataConfig`);
- ``runtime``: device, mixed precision, workers, logging (:class:`RuntimeConfig`).

Two keys are handled by the loader and are not fields: ``extends: <name or path>`` deep-merges the
file onto another one (so ``pascal_resnet101.yaml`` only states what differs from
``pascal_resnet50.yaml``), and ``fast: {...}`` is a nested override applied when ``MSANET_FAST=1``.

Per-fold values. ``base.epochs``, ``meta.epochs`` and ``meta.stop_interval`` may be a mapping
from each fold 0..3 to a value (the authors ship one file per fold, and some folds train longer:
``epochs: {0: 200, 1: 500, 2: 500, 3: 500}`` in ``pascal_resnet50.yaml``). The loader picks the
fold's value once the fold is known (after ``--fold`` and ``--set``), so the sections always hold
plain numbers; the mapping it came from is kept in :attr:`TrainConfig.per_fold` (written with the
config into ``config.yaml``, the checkpoints and ``done.json``). ``--set meta.epochs=3`` replaces
the mapping, ``--set meta.epochs.1=300`` changes one fold.

Every key is checked on load: an unknown key or a value of the wrong type raises
:class:`ConfigError` naming the key (``meta.base_lr``) and the expected type.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

from msanet_lib.model.msanet import MSANetConfig
from msanet_lib.utils import fast_mode

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"
DEFAULT_CONFIG = "toy"


class ConfigError(ValueError):
    """A config file or override has an unknown key, a wrong type or an impossible value."""


@dataclass
class PretrainStageConfig:
    """Stage 0, the toy world's ImageNet: the backbone learns dense shape / pattern / hue labels
    of generated scenes that never show a benchmark class (:mod:`msanet_lib.data.toy_pretrain`).

    Shared by all folds (it sees no class identity); its export is what ``base.init`` loads for
    ``resnet_toy``, as the authors' stage 1 loads ``resnet50_v2.pth``. Every group gets
    ``base_lr`` (from scratch, no 10x head multiplier).
    """

    epochs: int = 10
    batch_size: int = 16
    train_images: int = 6000              # generated in memory once per run (~4 ms per image)
    val_images: int = 256
    image_size: int = 128
    scale_min: float = 0.8
    scale_max: float = 1.25
    rotate_min: float = -10.0
    rotate_max: float = 10.0
    base_lr: float = 0.02
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    head_hidden: int = 64
    background_weight: float = 0.1        # loss weight of background pixels (87 % of them)
    samples_per_epoch: int | None = None  # None = every training image once per epoch
    data_seed: int = 0                    # seed of the generated images


@dataclass
class BaseStageConfig:
    """Stage 1: train the PSPNet base learner on the fold's base classes (BAM's ``train_base.py``).

    All layers learn; novel-class pixels are background. SGD with poly decay; parameter groups are
    ``[encoder (layer0..4), ppm, cls]`` and groups with index > ``index_split`` get
    ``scale_lr`` x the learning rate (``index_split: 0`` = encoder x1, ppm/cls x10).
    """

    epochs: int = 100
    batch_size: int = 12                  # global batch (all processes together)
    image_size: int = 417                 # square training crop and validation size
    scale_min: float = 0.5                # RandScale range of the augmentation
    scale_max: float = 2.0
    rotate_min: float = -10.0
    rotate_max: float = 10.0
    base_lr: float = 2.5e-4
    index_split: int = 0
    scale_lr: float = 10.0
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    stop_interval: int = 75               # stop after this many epochs without a new best
    val_batch_size: int = 6
    samples_per_epoch: int | None = None  # None = the whole training list; else a fresh
                                          # random subset of this size every epoch
    max_val_images: int | None = None     # None = every val image; else the first N
    init: str = "imagenet"                # "imagenet" | "torchvision" | "scratch" | "stage0"
                                          # (this run's own stage 0) | a weights path


@dataclass
class MetaStageConfig:
    """Stage 2: meta-train MSANet with the stage-1 backbone and base learner frozen (spec §3)."""

    epochs: int = 200
    batch_size: int = 8                   # global batch of episodes
    image_size: int = 473
    scale_min: float = 0.9
    scale_max: float = 1.1
    rotate_min: float = -10.0
    rotate_max: float = 10.0
    base_lr: float = 0.005
    index_split: int = -1                 # -1: every group gets scale_lr (0.05 effective start)
    scale_lr: float = 10.0
    power: float = 0.9
    momentum: float = 0.9
    weight_decay: float = 1e-4
    stop_interval: int = 75
    aux_weight1: float = 1.0              # weight of the meta-learner loss (aux_loss1)
    aux_weight2: float = 1.0              # weight of the base-learner loss (aux_loss2)
    val_episodes: int = 1000
    val_seed: int = 321
    val_half_epoch: bool = False          # also validate mid-epoch (BAM's SubEpoch_val)
    samples_per_epoch: int | None = None  # episodes per epoch (None = one per query image)
    base_learner: str = "stage1"          # "stage1" | "none" (random, frozen) | path to a file
    find_unused_parameters: bool = False  # DDP: only needed if a trainable module is unused


@dataclass
class DataConfig:
    """Which images episodes come from and where base labels come from (fss-field §2.8, §3.2).

    ``regime`` decides which training images the built episode lists keep
    (:mod:`msanet_lib.data.lists`): ``"bam"`` drops every image that shows a novel class (BAM's
    ``filter_intersection``, the lists MSANet trains on); ``"pfenet"`` keeps them with novel
    pixels as background (PFENet, HSNet; about 3 mIoU lower on PASCAL). Validation lists are the
    same under both. Stage 1 reads every image of the split, as BAM's ``train_base.py``.
    """

    regime: Literal["bam", "pfenet"] = "bam"
    lists: str | None = None              # None = build the episode lists from the dataset
                                          # (cached, `msanet-data build-lists`); a folder = the
                                          # authors' fss_list: <lists>/{train,val}/data_list_<f>.txt
                                          # and sub_class_file_list_<f>.txt, read as they are
    base_annotations: str = "on_the_fly"  # "on_the_fly" = base labels remapped from the labels;
                                          # a folder = the authors' pre-generated PNGs in
                                          # <folder>/{train,val}/<fold>/<label name>


@dataclass
class RuntimeConfig:
    """How and where to run; never changes the recipe (except through AMP precision)."""

    device: Literal["auto", "cpu", "cuda", "mps"] = "auto"
    amp: Literal["none", "bf16", "fp16"] = "none"
    channels_last: bool = False
    compile: bool = False
    tf32: bool = True                     # CUDA: TF32 tensor cores for float32 matmul/conv
    fast_frozen: bool = True              # stage 2 steps run the frozen base learner
                                          # factorised and (CPU) the supports' layer4 on the
                                          # mask box: the same function up to float rounding,
                                          # no weights copied (prepare_for_training);
                                          # false = as written
    dist_timeout_minutes: float = 30.0    # DDP: how long a rank waits in a collective
    workers: int = 2
    micro_batch_size: int | None = None   # most samples a process (GPU) forwards at once; a
                                          # larger share of the global batch is accumulated
                                          # over micro-steps (None = the whole share at once)
    log_every: int = 10                   # iterations between progress-bar/TensorBoard updates
    checkpoint_every: int = 0             # also save last.pth every N iterations (0 = per epoch)
    progress: bool = True                 # tqdm progress bars


@dataclass
class TrainConfig:
    """The complete description of a two-stage training run."""

    name: str = "toy"
    benchmark: Literal["toy", "pascal", "coco"] = "toy"
    fold: int = 0
    shots: int = 1
    seed: int = 321
    data_root: str | None = None          # None = msanet_lib.utils.data_root()
    use_split_coco: bool = True           # COCO-20i interleaved folds (all MSANet COCO configs)
    out: str | None = None                # None = runs/<name>/fold<f>_<k>shot
    model: MSANetConfig = field(default_factory=MSANetConfig)
    pretrain: PretrainStageConfig = field(default_factory=PretrainStageConfig)
    base: BaseStageConfig = field(default_factory=BaseStageConfig)
    meta: MetaStageConfig = field(default_factory=MetaStageConfig)
    data: DataConfig = field(default_factory=DataConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    # A record, filled by the loader: "section.key" -> {"<fold>": value} for every key the
    # config gave per fold. The value in use is the section's; this says where it came from.
    per_fold: dict[str, dict[str, int]] = field(default_factory=dict)

    def model_config(self) -> MSANetConfig:
        """The MSANetConfig to build, with ``shots`` taken from the top level."""
        return dataclasses.replace(self.model, shots=self.shots)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (YAML/JSON/checkpoint safe); ``model.shots`` equals ``shots``."""
        data = dataclasses.asdict(self)
        data["model"]["shots"] = self.shots
        return data

    def validate(self) -> None:
        """Check values that types alone cannot (ranges, divisibility); raise ConfigError."""
        folds = 4
        if not 0 <= self.fold < folds:
            raise ConfigError(f"fold={self.fold}: folds are 0..{folds - 1}.")
        if self.shots < 1:
            raise ConfigError(f"shots={self.shots}: need at least one support image.")
        for stage in ("pretrain", "base", "meta"):
            sec = getattr(self, stage)
            for key in ("epochs", "batch_size", "image_size"):
                if getattr(sec, key) < 1:
                    raise ConfigError(f"{stage}.{key}={getattr(sec, key)} must be >= 1.")
            if sec.base_lr <= 0:
                raise ConfigError(f"{stage}.base_lr={sec.base_lr} must be > 0.")
            if sec.scale_min > sec.scale_max:
                raise ConfigError(f"{stage}.scale_min must be <= {stage}.scale_max.")
        for key in ("train_images", "val_images"):
            if getattr(self.pretrain, key) < 1:
                raise ConfigError(f"pretrain.{key}={getattr(self.pretrain, key)} must be >= 1.")
        if self.meta.val_episodes < 1:
            raise ConfigError("meta.val_episodes must be >= 1.")
        if self.base.max_val_images is not None and self.base.max_val_images < 1:
            raise ConfigError(f"base.max_val_images={self.base.max_val_images} must be >= 1, "
                              "or null for every val image.")
        if self.runtime.workers < 0:
            raise ConfigError("runtime.workers must be >= 0.")
        for key in ("lists", "base_annotations"):
            if getattr(self.data, key) in ("", "null", "None"):
                raise ConfigError(f"data.{key}={getattr(self.data, key)!r}: give a folder"
                                  + (", or null to build the lists from the dataset."
                                     if key == "lists" else ", or on_the_fly."))
        if self.runtime.micro_batch_size is not None and self.runtime.micro_batch_size < 1:
            raise ConfigError(f"runtime.micro_batch_size={self.runtime.micro_batch_size} must be "
                              ">= 1, or null to forward each process's whole share at once.")


# --------------------------------------------------------------------------------------------
# Validation of plain dicts into dataclasses
# --------------------------------------------------------------------------------------------


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return " | ".join(repr(a) for a in typing.get_args(tp))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if dataclasses.is_dataclass(tp):
        return f"mapping ({tp.__name__})"
    return getattr(tp, "__name__", str(tp))


def _convert(value: Any, tp: Any, key: str) -> Any:
    """Return ``value`` checked (and, for int -> float, converted) against the type ``tp``."""
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a mapping ({tp.__name__}), "
                              f"got {type(value).__name__} {value!r}.")
        return from_dict(tp, value, prefix=key)
    if origin is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"config key '{key}' expects a mapping, got "
                              f"{type(value).__name__} {value!r}.")
        key_tp, value_tp = typing.get_args(tp)
        return {_convert(str(k) if key_tp is str else k, key_tp, f"{key}.{k}"):
                _convert(v, value_tp, f"{key}.{k}") for k, v in value.items()}
    if origin is Literal:
        choices = typing.get_args(tp)
        if value not in choices:
            raise ConfigError(f"config key '{key}' expects one of {_type_name(tp)}, got {value!r}.")
        return value
    if origin in (typing.Union, types.UnionType):
        for option in typing.get_args(tp):
            try:
                return _convert(value, option, key)
            except ConfigError:
                continue
        raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, "
                          f"got {type(value).__name__} {value!r}.")
    if tp is type(None):
        if value is None:
            return None
    elif tp is bool:
        if isinstance(value, bool):
            return value
    elif tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif tp is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
    elif tp is str:
        if isinstance(value, str):
            return value
    elif isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"config key '{key}' expects {_type_name(tp)}, "
                      f"got {type(value).__name__} {value!r}.")


def _elsewhere(cls: type, key: str, prefix: str) -> str:
    """``" (did you mean 'data.regime'?)"`` when ``key`` is a field of a section of ``cls``."""
    hints = typing.get_type_hints(cls)
    found = [f"'{prefix + '.' if prefix else ''}{f.name}.{key}'" for f in dataclasses.fields(cls)
             if dataclasses.is_dataclass(hints[f.name])
             and key in {g.name for g in dataclasses.fields(hints[f.name])}]
    return f" (did you mean {' or '.join(found)}?)" if found else ""


def from_dict(cls: type, data: Mapping[str, Any], prefix: str = "") -> Any:
    """Build the dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types."""
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls) if f.init]
    kwargs = {}
    for key, value in data.items():
        full = f"{prefix}.{key}" if prefix else str(key)
        if key not in names:
            raise ConfigError(f"unknown config key '{full}'{_elsewhere(cls, key, prefix)}. "
                              f"Valid keys here: {', '.join(names)}.")
        kwargs[key] = _convert(value, hints[key], full)
    return cls(**kwargs)


# --------------------------------------------------------------------------------------------
# YAML loading with `extends:` and `fast:`
# --------------------------------------------------------------------------------------------


def deep_merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = deep_merge(dict(out[key]), value)
        else:
            out[key] = value
    return out


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A config name (``pascal_resnet50``) in ``msanet_lib/configs/`` or a path to a YAML file."""
    text = str(name_or_path)
    candidates = [Path(text).expanduser()]
    if not text.endswith((".yaml", ".yml")):
        candidates.append(CONFIG_DIR / f"{text}.yaml")
    else:
        candidates.append(CONFIG_DIR / text)
    for path in candidates:
        if path.is_file():
            return path.resolve()
    available = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise FileNotFoundError(f"Config {text!r} not found (looked for {', '.join(map(str, candidates))}). "
                            f"Give a path to a YAML file or one of: {available}.")


def load_raw(name_or_path: str | Path, _seen: tuple[Path, ...] = ()) -> dict[str, Any]:
    """Read a YAML config, following ``extends:`` chains; returns the merged plain dict."""
    path = resolve_config_path(name_or_path)
    if path in _seen:
        chain = " -> ".join(str(p.name) for p in (*_seen, path))
        raise ConfigError(f"config 'extends:' loop: {chain}.")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise ConfigError(f"{path} must contain a mapping of config keys, got {type(data).__name__}.")
    parent = data.pop("extends", None)
    if parent is not None:
        if not isinstance(parent, str):
            raise ConfigError(f"{path}: 'extends' expects a config name or path (str).")
        sibling = [path.parent / parent, path.parent / f"{parent}.yaml"]
        target = next((p for p in sibling if p.is_file()), parent)
        base = load_raw(target, (*_seen, path))
        data = deep_merge(base, data)
    return data


def parse_override(text: str) -> dict[str, Any]:
    """``"meta.epochs=3"`` -> ``{"meta": {"epochs": 3}}``; the value is parsed as YAML.

    A part made of digits is a fold: ``"meta.epochs.1=300"`` -> ``{"meta": {"epochs": {1: 300}}}``
    (an int key, as YAML reads ``1: 500`` in a file, so that it replaces that fold's value).
    """
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value, e.g. meta.epochs=3.")
    dotted, raw = text.split("=", 1)
    value = yaml.safe_load(raw) if raw.strip() else None
    out: dict[str, Any] = {}
    node = out
    parts = dotted.strip().split(".")
    keys: list[str | int] = [int(part) if part.isdigit() else part for part in parts]
    for part in keys[:-1]:
        node = node.setdefault(part, {})
    node[keys[-1]] = value
    return out


# Keys that may be given per fold ({fold: value}); every other value is one for all folds.
PER_FOLD_KEYS: tuple[tuple[str, str], ...] = (
    ("base", "epochs"), ("meta", "epochs"), ("meta", "stop_interval"))
NUM_FOLDS = 4


def resolve_per_fold(data: dict[str, Any]) -> dict[str, Any]:
    """Replace each per-fold mapping of :data:`PER_FOLD_KEYS` in the merged config ``data``
    by the value of ``data["fold"]`` and record the mapping in ``data["per_fold"]``.

    A mapping must give every fold 0..3 (a typo in one fold's file would otherwise only show
    when that fold is trained). Keys may be ints or digit strings (JSON turns ints to strings).

    Raises:
        ConfigError: a fold missing from a mapping or an unknown fold (the message names the
            key). A mapping given for another key is reported by :func:`from_dict`.
    """
    fold = data.get("fold", TrainConfig.fold)
    if not isinstance(fold, int) or isinstance(fold, bool):
        return data  # from_dict reports the wrong type of 'fold'
    record: dict[str, dict[str, int]] = {}
    out = dict(data)
    for section, key in PER_FOLD_KEYS:
        sec = out.get(section)
        if not isinstance(sec, Mapping) or not isinstance(sec.get(key), Mapping):
            continue
        table: dict[int, Any] = {}
        for k, v in sec[key].items():  # later entries win: an override "1" after a file's 1
            if not (isinstance(k, int) or (isinstance(k, str) and k.isdigit())) or \
                    not 0 <= int(k) < NUM_FOLDS:
                raise ConfigError(f"config key '{section}.{key}' maps folds to values; "
                                  f"{k!r} is not a fold 0..{NUM_FOLDS - 1}.")
            table[int(k)] = v
        missing = [f for f in range(NUM_FOLDS) if f not in table]
        if missing:
            raise ConfigError(
                f"config key '{section}.{key}' gives no value for fold(s) "
                f"{', '.join(map(str, missing))}: give every fold 0..{NUM_FOLDS - 1} "
                f"({section}.{key}: {{0: N, 1: N, 2: N, 3: N}}) or one number for all.")
        if not 0 <= fold < NUM_FOLDS:  # the same message as validate()
            raise ConfigError(f"fold={fold}: folds are 0..{NUM_FOLDS - 1}.")
        values = {f: _convert(table[f], int, f"{section}.{key}.{f}") for f in sorted(table)}
        out[section] = {**sec, key: values[fold]}
        record[f"{section}.{key}"] = {str(f): v for f, v in values.items()}
    if record:
        out["per_fold"] = record
    else:
        out.pop("per_fold", None)
    return out


def load_config(
    name_or_path: str | Path = DEFAULT_CONFIG,
    overrides: Mapping[str, Any] | None = None,
    fast: bool | None = None,
) -> TrainConfig:
    """Load, merge and validate a training config.

    Args:
        name_or_path: config name in ``msanet_lib/configs`` or a YAML path.
        overrides: nested dict merged last (the command line: ``--fold``, ``--set``...).
        fast: apply the file's ``fast:`` section; default: ``MSANET_FAST`` is set.
    Raises:
        ConfigError: unknown key, wrong type or impossible value (the message names the key).
        FileNotFoundError: the config does not exist.
    """
    data = load_raw(name_or_path)
    fast_section = data.pop("fast", None) or {}
    if not isinstance(fast_section, Mapping):
        raise ConfigError("'fast' expects a mapping of overrides applied when MSANET_FAST=1.")
    if fast if fast is not None else fast_mode():
        data = deep_merge(data, fast_section)
    if overrides:
        data = deep_merge(data, overrides)
    data.pop("per_fold", None)  # a record the loader writes, never an input
    data = resolve_per_fold(data)
    model = data.get("model")
    if isinstance(model, Mapping) and "shots" in model:
        raise ConfigError("config key 'model.shots' is set from the top-level 'shots'; "
                          "remove it from the model section.")
    cfg = from_dict(TrainConfig, data)
    cfg.validate()
    return cfg


def config_from_dict(data: Mapping[str, Any]) -> TrainConfig:
    """Rebuild a TrainConfig saved with :meth:`TrainConfig.to_dict` (e.g. from a checkpoint)."""
    data = deep_merge({}, data)
    model = dict(data.get("model", {}))
    model.pop("shots", None)
    data["model"] = model
    cfg = from_dict(TrainConfig, data)
    cfg.validate()
    return cfg
