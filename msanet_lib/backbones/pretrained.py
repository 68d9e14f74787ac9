"""ImageNet initialisation of the backbones (spec §1.1 "Initialisation", §6 "Weights").

Accepted sources for :func:`load_imagenet_weights`:

1. **The authors' files** ``initmodel/resnet50_v2.pth``, ``resnet101_v2.pth`` (PSPNet/semseg
   deep-stem ResNets: keys ``conv1, bn1, conv2, bn2, conv3, bn3`` for the stem, ``layer1..4.*``,
   ``fc.*``) and ``vgg16_bn.pth`` (``features.N.*``, ``classifier.*``). Every backbone tensor
   loads; the ImageNet classifier is ignored. The authors load them with ``strict=False`` and
   never report a missing key; here every gap is listed.
2. **torchvision's ImageNet weights**, from a local file in torchvision's format or, only when
   asked with ``source="torchvision"``, downloaded by torchvision.

   - ``vgg16_bn``: torchvision's ``features.N.*`` is exactly our VGG; everything loads.
   - ``resnet50`` / ``resnet101``: torchvision has a single 7x7 stem conv (``conv1`` (64,3,7,7),
     ``bn1``), our deep stem has three 3x3 convs, so **layer0 stays randomly initialised**
     (a warning says so). In ``layer1..4`` every tensor has the same name and shape except two:
     ``layer1.0.conv1.weight`` ((64,64,1,1) in torchvision vs (64,128,1,1) here) and
     ``layer1.0.downsample.0.weight`` ((256,64,1,1) vs (256,128,1,1)), because the deep stem
     outputs 128 channels instead of 64; those two stay random too. The ImageNet classifier
     ``fc.*`` is ignored. Fine-tune all layers afterwards: the stem and the first block of
     layer1 must be learnt.
3. **A file in this library's format** (``layer0..4.*`` keys, e.g. a stage-1 PSPNet): its backbone
   tensors load and everything else (``ppm``, ``cls``, BAM's ``encoder`` duplicate) is ignored.

Without a source, the authors' file is looked for at ``<data root>/initmodel/<file>``
(:func:`default_imagenet_path`; data root = ``$MSANET_DATA`` or ``data/``).
``resnet_toy``'s "ImageNet" file is the toy world's stage 0 (:mod:`msanet_lib.training.stage0`),
shipped in the repository at :data:`TOY_PRETRAINED` (a file of format 3).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from pathlib import Path

from torch import Tensor
from torchvision.models import get_weight

from msanet_lib.backbones.base import Backbone
from msanet_lib.backbones.state_dicts import (
    BENIGN_MISSING_SUFFIXES,
    LoadReport,
    describe_problems,
    extract_state_dict,
    match_state_dict,
    read_weights_file,
    rename_prefixes,
    strip_wrapper_prefixes,
)
from msanet_lib.backbones.vgg import VGG_STAGE_BOUNDS, VGGBackbone
from msanet_lib.utils import REPO_ROOT, data_root

AUTHORS_DOWNLOAD = (
    "The authors' ImageNet backbones (resnet50_v2.pth, resnet101_v2.pth, vgg16_bn.pth) are linked "
    "as 'pre-trained backbones' in the MSANet README (github.com/AIVResearch/MSANet, OneDrive "
    "folder); they go in initmodel/."
)
AUTHORS_FILES: dict[str, str] = {
    "resnet50": "resnet50_v2.pth",
    "resnet101": "resnet101_v2.pth",
    "vgg16_bn": "vgg16_bn.pth",
}
# The toy world has no ImageNet: its generic pretraining (stage 0) ships with the repository.
TOY_PRETRAINED = REPO_ROOT / "checkpoints" / "toy" / "stage0" / "resnet_toy.pth"
TOY_PRETRAINED_HINT = (
    "It ships with the repository; recreate it with `python scripts/train_toy_models.py "
    "stage0` (stage 0, about 15 min on a laptop CPU), or start from scratch with "
    "--set base.init=scratch."
)
TORCHVISION_URLS: dict[str, str] = {
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "vgg16_bn": "https://download.pytorch.org/models/vgg16_bn-6c64b313.pth",
}
# torchvision weight enums used when the user asks for source="torchvision" (ImageNet, V1).
TORCHVISION_WEIGHTS: dict[str, str] = {
    "resnet50": "ResNet50_Weights.IMAGENET1K_V1",
    "resnet101": "ResNet101_Weights.IMAGENET1K_V1",
    "vgg16_bn": "VGG16_BN_Weights.IMAGENET1K_V1",
}

# The authors' deep-stem ResNet names its stem modules at the top level; our layer0 Sequential
# holds them at these indices (ReLUs at 2, 5, 8 and the max-pool at 9 have no tensors).
AUTHORS_STEM_TO_LAYER0: dict[str, str] = {
    "conv1.": "layer0.0.",
    "bn1.": "layer0.1.",
    "conv2.": "layer0.3.",
    "bn2.": "layer0.4.",
    "conv3.": "layer0.6.",
    "bn3.": "layer0.7.",
}
STAGE_PREFIXES: tuple[str, ...] = tuple(f"layer{i}." for i in range(5))

# Tensors that torchvision's 7x7-stem ResNets cannot provide to the deep-stem model.
TORCHVISION_RESNET_GAPS: tuple[str, ...] = (
    "layer0.",
    "layer1.0.conv1.weight",
    "layer1.0.downsample.0.weight",
)
KNOWN_GAPS: dict[str, Callable[[str], bool]] = {
    "torchvision-resnet": lambda key: key.startswith(TORCHVISION_RESNET_GAPS),
}


def default_imagenet_path(name: str) -> Path:
    """Where the authors' ImageNet file for backbone ``name`` is expected by default
    (``resnet_toy``: the shipped stage-0 export)."""
    if name == "resnet_toy":
        return TOY_PRETRAINED
    if name not in AUTHORS_FILES:
        raise ValueError(
            f"the backbone {name!r} has no ImageNet weights (train it from scratch); ImageNet "
            f"weights exist for {', '.join(AUTHORS_FILES)}."
        )
    return data_root() / "initmodel" / AUTHORS_FILES[name]


def load_imagenet_weights(
    backbone: Backbone,
    source: str | Path | Mapping[str, Tensor] | None = None,
    *,
    strict: bool = True,
) -> LoadReport:
    """Initialise ``backbone`` in place from ImageNet weights.

    Args:
        backbone: a backbone from ``build_backbone`` (``resnet50``, ``resnet101``, ``vgg16_bn``).
        source: a path to one of the files described in this module's docstring, an already
            loaded state dict, the string ``"torchvision"`` to download torchvision's
            ImageNet weights (network access; never used by the tests), or None for the
            authors' file at :func:`default_imagenet_path`.
        strict: raise if a backbone tensor cannot be loaded, apart from the known gaps of
            torchvision ResNet weights (the deep stem ``layer0`` and two ``layer1.0`` tensors),
            which are reported with a warning. ``strict=False`` loads whatever matches and
            warns about the rest.

    Returns:
        A :class:`~msanet_lib.backbones.state_dicts.LoadReport` (``file_format`` is the layout
        detected by :func:`detect_format`; ``loaded``/``missing`` are backbone keys).

    Raises:
        FileNotFoundError: the file does not exist (says how to get it).
        ValueError: corrupt file, a file for another architecture, nothing loadable, or
            (``strict``) an unexpected gap.
    """
    name = backbone.name
    if source is None:
        source = default_imagenet_path(name)
    if isinstance(source, Mapping):
        raw, label = dict(source), "<state dict>"
    elif str(source) == "torchvision":
        raw, label = _download_torchvision_state_dict(name), "torchvision"
    else:
        hint = TOY_PRETRAINED_HINT if name == "resnet_toy" else AUTHORS_DOWNLOAD + (
            f" Or use torchvision's ImageNet weights for {name} ({TORCHVISION_URLS[name]}; "
            "source='torchvision' downloads them; the deep stem then stays random)."
            if name in TORCHVISION_URLS
            else ""
        )
        obj = read_weights_file(source, how_to_get=hint)
        raw, _ = extract_state_dict(obj, source)
        label = str(source)
    # the weights layer's steps: adapt (wrappers, format, rename map) -> match -> report
    state, removed = strip_wrapper_prefixes(raw)
    file_format = detect_format(state, label)
    _check_architecture(backbone, file_format, label)
    mapped, ignored = MAPPERS[file_format](state)

    match = match_state_dict(backbone.state_dict(), mapped)
    report = LoadReport.from_match(label, file_format, match, ignored=ignored,
                                   prefixes_removed=removed)
    if not any(not k.endswith(BENIGN_MISSING_SUFFIXES) for k in match.loadable):
        raise ValueError(
            f"nothing in {label} fits the {name} backbone: {match.problems()}. Is this file for "
            "another backbone?"
        )
    if strict:
        known = KNOWN_GAPS.get(file_format, lambda _key: False)
        missing = [k for k in report.missing if not known(k)]
        mismatched = [m for m in report.mismatched if not known(m[0])]
        if missing or mismatched or report.unexpected:
            raise ValueError(
                f"{label} does not fit the {name} backbone: "
                f"{describe_problems(missing, report.unexpected, mismatched)}. "
                "Pass strict=False to load only the matching tensors."
            )
    backbone.load_state_dict(match.loadable, strict=False)
    if not report.ok:
        warnings.warn(report.summary(), stacklevel=2)
    return report


def detect_format(state: Mapping[str, Tensor], label: str = "weights") -> str:
    """Which layout a backbone state dict uses (see the module docstring)."""
    if any(k.startswith("features.") for k in state):
        return "vgg16_bn"
    conv1 = state.get("conv1.weight")
    if conv1 is not None and conv1.dim() == 4:
        if conv1.shape[-1] == 7:
            return "torchvision-resnet"
        if "conv2.weight" in state and "conv3.weight" in state:
            return "authors-resnet"
    if any(k.startswith(STAGE_PREFIXES) for k in state):
        return "msanet"
    first = ", ".join(list(state)[:8])
    raise ValueError(
        f"{label} is not a known ImageNet backbone layout (first keys: {first}); expected the "
        "authors' resnet*_v2.pth / vgg16_bn.pth, torchvision's resnet50/101/vgg16_bn weights, "
        "or a file with layer0..layer4 keys."
    )


def _check_architecture(backbone: Backbone, file_format: str, label: str) -> None:
    is_vgg = isinstance(backbone, VGGBackbone)
    if file_format == "vgg16_bn" and not is_vgg:
        raise ValueError(f"{label} holds VGG16-bn weights but the backbone is {backbone.name}.")
    if file_format.endswith("resnet") and is_vgg:
        raise ValueError(f"{label} holds ResNet weights but the backbone is vgg16_bn.")


def _map_authors_resnet(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Deep-stem ResNet (``conv1..3``, ``bn1..3`` at top level) -> ``layer0.{0,1,3,4,6,7}``."""
    return _keep_stages(rename_prefixes(state, AUTHORS_STEM_TO_LAYER0))  # fc.*: ignored


def _keep_stages(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """Keep ``layer0..4.*``; the rest is ignored: torchvision's 7x7 stem and ``fc``, the heads
    of our own files and BAM's ``encoder`` copy."""
    mapped = {k: v for k, v in state.items() if k.startswith(STAGE_PREFIXES)}
    return mapped, [k for k in state if k not in mapped]


def _map_vgg(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], list[str]]:
    """``features.N.*`` -> ``layer{i}.{N - start_i}.*`` following the authors' cut."""
    mapped: dict[str, Tensor] = {}
    ignored: list[str] = []
    for key, value in state.items():
        parts = key.split(".", 2)
        if parts[0] == "features" and len(parts) == 3 and parts[1].isdigit():
            index = int(parts[1])
            for stage, (start, stop) in enumerate(VGG_STAGE_BOUNDS):
                if start <= index < stop:
                    mapped[f"layer{stage}.{index - start}.{parts[2]}"] = value
                    break
            else:
                ignored.append(key)
        else:  # classifier.*
            ignored.append(key)
    return mapped, ignored


MAPPERS: dict[str, Callable[[Mapping[str, Tensor]], tuple[dict[str, Tensor], list[str]]]] = {
    "authors-resnet": _map_authors_resnet,
    "torchvision-resnet": _keep_stages,
    "vgg16_bn": _map_vgg,
    "msanet": _keep_stages,
}


def _download_torchvision_state_dict(name: str) -> dict[str, Tensor]:
    """Download (or read from torch's cache) torchvision's ImageNet weights for ``name``."""
    if name not in TORCHVISION_WEIGHTS:
        raise ValueError(
            f"torchvision has no ImageNet weights for the backbone {name!r}; "
            f"choose one of {', '.join(TORCHVISION_WEIGHTS)} or train it from scratch."
        )
    weights = get_weight(TORCHVISION_WEIGHTS[name])
    try:
        return dict(weights.get_state_dict(progress=True))
    except Exception as err:  # network errors come in many types (URLError, OSError, ...)
        raise ValueError(
            f"could not download torchvision's {name} weights ({type(err).__name__}: {err}). "
            f"Download {TORCHVISION_URLS[name]} by hand and pass its path as the source."
        ) from err
