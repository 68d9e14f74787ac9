"""Backbones (encoders) of MSANet: deep-stem dilated ResNets, VGG16-bn and a small toy ResNet.

Every backbone has five stages ``layer0 .. layer4`` named as in the authors' checkpoints and a
``forward`` returning :class:`BackboneOutput` (stage outputs + per-block features, spec §1.2).
ImageNet weights are loaded separately with
:func:`msanet_lib.backbones.pretrained.load_imagenet_weights`.
"""

from __future__ import annotations

from collections.abc import Callable

from msanet_lib.backbones.base import Backbone, BackboneOutput, share_backbone_layers
from msanet_lib.backbones.resnet import ResNetBackbone, resnet50, resnet101, resnet_toy
from msanet_lib.backbones.vgg import VGGBackbone, vgg16_bn

_BUILDERS: dict[str, Callable[[], Backbone]] = {
    "resnet50": resnet50,
    "resnet101": resnet101,
    "vgg16_bn": vgg16_bn,
    "resnet_toy": resnet_toy,
}

BACKBONE_NAMES: tuple[str, ...] = tuple(_BUILDERS)


def build_backbone(name: str) -> Backbone:
    """A randomly initialised backbone by name: one of ``BACKBONE_NAMES``.

    Raises:
        ValueError: ``name`` is not a known backbone.
    """
    if name not in _BUILDERS:
        raise ValueError(
            f"backbone={name!r} is not available; choose one of {', '.join(BACKBONE_NAMES)}."
        )
    return _BUILDERS[name]()


__all__ = [
    "BACKBONE_NAMES",
    "Backbone",
    "BackboneOutput",
    "ResNetBackbone",
    "VGGBackbone",
    "build_backbone",
    "share_backbone_layers",
]
