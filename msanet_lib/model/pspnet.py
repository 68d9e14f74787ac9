"""PSPNet, the stage-1 base learner (BAM's ``train_base.py``; spec §1.1, §1.9, §3).

A full semantic-segmentation network over the fold's *base* classes: backbone stages
``layer0 .. layer4``, the pyramid pooling module ``ppm`` and the classifier ``cls``. Everything
learns in stage 1. MSANet then takes ``layer0 .. layer4`` as its frozen encoder and
``Sequential(ppm, cls)`` as its frozen ``learner_base``.

State-dict keys are BAM's (``layer0.0.weight`` ... ``ppm.features.0.1.weight`` ...
``cls.4.bias``) except that BAM also registers ``encoder = Sequential(layer0..4)``, which stores
every backbone tensor a second time under ``encoder.{0..4}.*``; that duplicate is left out here
and dropped by :func:`msanet_lib.model.checkpoints.load_authors_checkpoint`.
"""

from __future__ import annotations

from typing import NamedTuple, Protocol

import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import Backbone, build_backbone, share_backbone_layers
from msanet_lib.modules.base_learner import PPM, BaseLearner
from msanet_lib.runtime import IGNORE_LABEL


class PSPNetConfigLike(Protocol):
    """Any config with these fields builds a PSPNet (``MSANetConfig`` does)."""

    backbone: str
    num_base_classes: int
    base_hidden: int


class PSPNetTrainOutput(NamedTuple):
    """Training-mode output when a label is given: ``pred`` (B, H, W) argmax, ``loss`` scalar."""

    pred: Tensor
    loss: Tensor


class PSPNet(nn.Module):
    """Backbone + PPM + classifier, predicting ``num_classes`` classes (background included).

    Args:
        config: an object with ``backbone``, ``num_base_classes`` and ``base_hidden`` (e.g.
            ``MSANetConfig``); the keyword arguments below override its fields.
        backbone: a ``build_backbone`` name or a built :class:`Backbone`.
        num_classes: output classes incl. background (16 PASCAL-5i, 61 COCO-20i).
        hidden: classifier width (512).
        ignore_index: label value excluded from the loss (255).

    ``forward(x)`` -> logits (B, num_classes, H, W) at the input size (bilinear,
    align_corners=True). ``forward(x, y)`` in training mode -> ``PSPNetTrainOutput(pred, loss)``
    with cross-entropy ignoring ``ignore_index``, as BAM's PSPNet.
    """

    def __init__(
        self,
        config: PSPNetConfigLike | None = None,
        *,
        backbone: str | Backbone | None = None,
        num_classes: int | None = None,
        hidden: int | None = None,
        ignore_index: int = IGNORE_LABEL,
    ) -> None:
        super().__init__()
        if backbone is None:
            backbone = config.backbone if config is not None else "resnet50"
        if num_classes is None:
            num_classes = config.num_base_classes if config is not None else 16
        if hidden is None:
            hidden = config.base_hidden if config is not None else 512
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + base classes), got {num_classes}")
        if isinstance(backbone, str):
            backbone = build_backbone(backbone)
        share_backbone_layers(self, backbone)
        self.backbone_name = backbone.name
        self.num_classes = num_classes
        self.ignore_index = ignore_index
        learner = BaseLearner(backbone.channels[4], num_classes, hidden=hidden)
        # Registered under BAM's names so ``best.pth`` files load key for key.
        self.ppm: PPM = learner.ppm
        self.cls: nn.Sequential = learner.cls

    @property
    def backbone(self) -> Backbone:
        """The backbone sharing this model's ``layer0 .. layer4`` (gives per-block feats too)."""
        return self._backbone

    def encoder_modules(self) -> list[nn.Module]:
        """``[layer0, .., layer4]``: BAM's ``encoder`` parameter group (learning rate x1)."""
        return [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]

    def logits_low(self, x: Tensor) -> Tensor:
        """Logits at feature resolution: (B, 3, H, W) -> (B, num_classes, H/8, W/8) (ResNet)."""
        feat = x
        for stage in self.encoder_modules():
            feat = stage(feat)
        return self.cls(self.ppm(feat))

    def forward(self, x: Tensor, y: Tensor | None = None) -> Tensor | PSPNetTrainOutput:
        """Segment base classes.

        Args:
            x: images (B, 3, H, W), ImageNet-normalised.
            y: base labels (B, H, W) int64 in ``0..num_classes-1`` or ``ignore_index``;
                only used in training mode.

        Returns:
            Training mode with ``y``: ``PSPNetTrainOutput(pred (B, H, W), loss)``.
            Otherwise: logits (B, num_classes, H, W).
        """
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"x must be (B, 3, H, W) images, got shape {tuple(x.shape)}")
        train_step = self.training and y is not None
        if train_step and y.shape != (x.shape[0], *x.shape[-2:]):
            raise ValueError(
                f"y must be (B, H, W) = {(x.shape[0], *x.shape[-2:])} base labels, "
                f"got shape {tuple(y.shape)}"
            )
        if x.shape[0] == 1 and self.ppm.features[0][2].training:
            # The 1x1 PPM branch leaves BatchNorm one value per channel: undefined batch stats.
            raise ValueError(
                "PSPNet with BatchNorm in training mode needs a batch of at least 2 images "
                "(got 1); use a larger batch_size or call model.eval()."
            )
        logits = F.interpolate(
            self.logits_low(x), size=x.shape[-2:], mode="bilinear", align_corners=True
        )
        if not train_step:
            return logits
        loss = F.cross_entropy(logits, y.long(), ignore_index=self.ignore_index)
        return PSPNetTrainOutput(logits.argmax(dim=1), loss)
