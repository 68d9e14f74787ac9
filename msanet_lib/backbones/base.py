"""The backbone contract shared by every encoder (spec §1.1-1.2, docs/ARCHITECTURE.md).

A backbone is five stages ``layer0 .. layer4`` whose state-dict names are the authors', plus one
``forward`` that returns, in a single pass, both the five stage outputs and the per-block
features that the multi-similarity module correlates.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import NamedTuple

from torch import Tensor, nn


class BackboneOutput(NamedTuple):
    """Everything MSANet needs from one backbone pass.

    Attributes:
        layers: ``[layer0, layer1, layer2, layer3, layer4]``, the post-ReLU stage outputs,
            each ``(B, C_i, H_i, W_i)`` with ``C_i = Backbone.channels[i]``.
        feats: per-block features for the multi-similarity module (spec §1.2), each
            ``(B, C, h, w)``. ResNet: the output of every residual block from layer1's last block
            on, after the residual add and before the block's final ReLU (so it can be negative).
            VGG: the 7 maps of the authors' ``extract_feat_vgg``.
    """

    layers: list[Tensor]
    feats: list[Tensor]


class Backbone(nn.Module, ABC):
    """Base class of all encoders: ``layer0 .. layer4`` plus a one-pass feature extractor.

    Subclasses set the five stage modules as attributes named ``layer0`` .. ``layer4`` (so the
    state-dict keys are ``layer0.*`` .. ``layer4.*`` as in the authors' checkpoints) and fill in:

    Attributes:
        name: the ``build_backbone`` name.
        channels: output channels of layer0 .. layer4.
        feat_groups: how many of the LAST ``feats`` form the layer2, layer3 and layer4
            similarity groups (R50 ``(4, 6, 3)``, VGG ``(3, 3, 1)``); earlier feats only fix the
            size of the first support-mask resize (spec §1.4 step 7).
        num_feats: length of ``BackboneOutput.feats`` (R50 14, R101 31, VGG 7).
    """

    name: str
    channels: tuple[int, int, int, int, int]
    feat_groups: tuple[int, int, int]
    num_feats: int

    def stages(self) -> list[nn.Module]:
        """The five stage modules ``[layer0, .., layer4]`` in order."""
        return [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]

    def convs_read_before_norm(self) -> tuple[str, ...]:
        """Names (``layer3.0``, ...) of the convolutions whose output before BatchNorm is a feature.

        Folding the BatchNorm into such a convolution would change that feature, so
        :func:`msanet_lib.model.inference.prepare_for_inference` leaves them as they are. The
        names are the same on the backbone and on a model sharing its stages.
        """
        return ()

    @abstractmethod
    def forward(self, x: Tensor) -> BackboneOutput:
        """Run the image ``x`` (B, 3, H, W) through all stages once.

        Returns:
            ``BackboneOutput(layers, feats)``, see its docstring.
        """


def share_backbone_layers(owner: nn.Module, backbone: Backbone) -> None:
    """Make ``backbone``'s stages top-level submodules ``owner.layer0 .. owner.layer4``.

    The authors' checkpoints name the encoder weights ``layer0.*`` .. ``layer4.*`` at the top of
    PSPNet and MSANet, not ``backbone.layer0.*``. So the stages are registered on the owner, and
    the ``Backbone`` object (which only adds the feature-extraction forward and holds no tensors
    of its own) is kept as a plain, unregistered attribute ``owner._backbone``: it shares the very
    same stage modules, so ``.to()``, ``load_state_dict`` and ``train()/eval()`` on the owner
    apply to what ``owner._backbone(x)`` runs. (``train()`` does not reach the unregistered
    object, but its forward only depends on the stages' own modes.)
    """
    for i, stage in enumerate(backbone.stages()):
        setattr(owner, f"layer{i}", stage)
    # object.__setattr__ bypasses nn.Module registration on purpose (see above).
    object.__setattr__(owner, "_backbone", backbone)
