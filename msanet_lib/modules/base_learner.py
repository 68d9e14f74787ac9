"""The base learner head: PSPNet's pyramid pooling module and classifier (spec §1.9).

In stage 1 (BAM's ``train_base.py``) a full PSPNet is trained to segment the fold's base classes.
MSANet then reuses its head, frozen, as ``learner_base = Sequential(ppm, cls)`` on the query
layer4 output, and uses the predicted base-class probabilities to suppress base-class pixels in
the final ensemble (spec §1.10).

State-dict names follow the authors: inside PSPNet ``ppm.features.{0..3}.{1,2}.*`` and
``cls.{0,1,4}.*``; inside MSANet the same under ``learner_base.0`` and ``learner_base.1``.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

PPM_BINS: tuple[int, ...] = (1, 2, 3, 6)


class PPM(nn.Module):
    """Pyramid pooling module (PSPNet, Zhao et al. 2017).

    For each bin size b: adaptive average pooling to b x b, 1x1 conv (no bias) to
    ``reduction_dim`` channels, BN, ReLU, bilinear upsampling (align_corners=True) back to the
    input size. The input and all branches are concatenated along channels.

    Args:
        in_dim: input channels C (2048 for ResNet, 512 for VGG).
        reduction_dim: channels per branch; the authors use C / len(bins).
        bins: pooled grid sizes.

    Shapes: (B, C, H, W) -> (B, C + len(bins) * reduction_dim, H, W), i.e. (B, 2C, H, W).
    """

    def __init__(self, in_dim: int, reduction_dim: int, bins: Sequence[int] = PPM_BINS) -> None:
        super().__init__()
        self.bins = tuple(bins)
        # Each branch is Sequential(pool, conv, BN, ReLU) so the keys are features.i.{1,2}.*
        self.features = nn.ModuleList(
            nn.Sequential(
                nn.AdaptiveAvgPool2d(b),
                nn.Conv2d(in_dim, reduction_dim, kernel_size=1, bias=False),
                nn.BatchNorm2d(reduction_dim),
                nn.ReLU(inplace=True),
            )
            for b in self.bins
        )

    @property
    def out_channels(self) -> int:
        """Channels of the concatenated output."""
        first = self.features[0][1]
        return first.in_channels + len(self.bins) * first.out_channels

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, H, W) -> (B, C + len(bins) * reduction_dim, H, W)."""
        size = x.shape[-2:]
        branches = [
            F.interpolate(branch(x), size=size, mode="bilinear", align_corners=True)
            for branch in self.features
        ]
        return torch.cat([x, *branches], dim=1)


def pspnet_classifier(in_dim: int, num_classes: int, hidden: int = 512) -> nn.Sequential:
    """PSPNet's ``cls``: 3x3 conv (no bias) -> BN -> ReLU -> Dropout2d(0.1) -> 1x1 conv (bias).

    Shapes: (B, in_dim, H, W) -> (B, num_classes, H, W). ``num_classes`` includes background
    (16 for PASCAL-5i, 61 for COCO-20i). The dropout stays active whenever the module is in
    training mode, which MSANet's meta-training keeps (spec §1.9).
    """
    return nn.Sequential(
        nn.Conv2d(in_dim, hidden, kernel_size=3, padding=1, bias=False),
        nn.BatchNorm2d(hidden),
        nn.ReLU(inplace=True),
        nn.Dropout2d(p=0.1),
        nn.Conv2d(hidden, num_classes, kernel_size=1),
    )


class BaseLearner(nn.Sequential):
    """``learner_base`` = Sequential(PPM, classifier): base-class logits from layer4 features.

    Args:
        in_dim: layer4 channels C (2048 ResNet, 512 VGG).
        num_classes: base classes + background (16 PASCAL, 61 COCO).
        hidden: classifier width (512 for the authors).
        bins: PPM bins.

    Shapes: (B, C, h, w) -> (B, num_classes, h, w), at feature resolution (the caller
    upsamples). PASCAL ResNet-50 has 23,082,000 parameters.
    """

    def __init__(
        self,
        in_dim: int,
        num_classes: int,
        hidden: int = 512,
        bins: Sequence[int] = PPM_BINS,
    ) -> None:
        ppm = PPM(in_dim, in_dim // len(bins), bins)
        super().__init__(ppm, pspnet_classifier(ppm.out_channels, num_classes, hidden))

    @property
    def ppm(self) -> PPM:
        """The pyramid pooling module (``learner_base.0``)."""
        return self[0]

    @property
    def cls(self) -> nn.Sequential:
        """The classifier (``learner_base.1``)."""
        return self[1]


def interpolation_matrix(n_in: int, n_out: int, like: Tensor) -> Tensor:
    """(n_out, n_in) weights of 1-D linear interpolation with ``align_corners=True``.

    Bilinear upsampling is separable: ``F.interpolate(p, (H, W), "bilinear", align_corners=True)``
    equals ``A @ p @ B.T`` per channel, with ``A = interpolation_matrix(h, H)`` and
    ``B = interpolation_matrix(w, W)``. Dtype and device of ``like``.
    """
    eye = torch.eye(n_in, dtype=like.dtype, device=like.device)[None]  # (1, n_in, n_in)
    return F.interpolate(eye, size=n_out, mode="linear", align_corners=True)[0].T


def conv3x3_of_upsampled(p: Tensor, weight: Tensor, size: tuple[int, int]) -> Tensor:
    """``F.conv2d(up(p), weight, padding=1)`` without building ``up(p)``, the bilinear upsample.

    A 3x3 convolution of a bilinearly upsampled map is, per output channel o,
    ``sum_ij A_i (W_ij p)[o] B_j^T``: the channel mixing ``W_ij p`` (one per kernel tap) runs at
    the pooled b x b size, ``A_i`` is the interpolation matrix shifted by the tap's row offset
    (zero rows where the tap falls in the zero padding) and ``B_j`` likewise for columns.

    Args:
        p: (N, C, h, w) pooled map.
        weight: (O, C, 3, 3) convolution weight (stride 1, padding 1, dilation 1, no groups).
        size: (H, W) of the upsampled map.

    Returns:
        (N, O, H, W), equal to the direct computation up to float rounding.
    """
    (n, _, h, w), (height, width) = p.shape, size
    mixed = torch.einsum("ocij,ncuv->noiujv", weight, p)  # (N, O, 3, h, 3, w)
    mixed = mixed.reshape(n, weight.shape[0], 3 * h, 3 * w)
    rows = F.pad(interpolation_matrix(h, height, p), (0, 0, 1, 1))  # zero padding row each side
    cols = F.pad(interpolation_matrix(w, width, p), (0, 0, 1, 1))
    a = torch.cat([rows[i : i + height] for i in range(3)], dim=1)  # (H, 3h): tap row i
    b = torch.cat([cols[j : j + width] for j in range(3)], dim=1)  # (W, 3w)
    return a @ mixed @ b.T


class FactorisedBaseLearner(nn.Module):
    """The same function as a :class:`BaseLearner`, for evaluation, at about half its cost.

    In ``cls(ppm(x))`` the first 3x3 convolution reads ``cat[x, up(p_1), .., up(p_6)]``: half of
    its input channels are bilinear upsamplings of the 1x1 .. 6x6 pooled branches ``p_b``. Being
    linear, the convolution splits by input channels; on ``x`` it runs as usual, on each branch
    through :func:`conv3x3_of_upsampled` at the pooled size. With ResNet-50 at 473 px this
    removes 68 of the 136 GFLOP of the base learner (a quarter of the whole eval forward's) and
    the 4096-channel concatenation. Outputs equal the base learner's up to float rounding.

    Args:
        learner: a base learner in eval mode whose ``cls[0]`` is a 3x3 convolution with
            stride 1, padding 1, dilation 1 and no groups (PSPNet's); its modules are shared.

    Shapes: (B, C, h, w) -> (B, num_classes, h, w), as :class:`BaseLearner`.
    """

    def __init__(self, learner: BaseLearner) -> None:
        super().__init__()
        conv = learner.cls[0]
        if not (isinstance(conv, nn.Conv2d) and conv.kernel_size == (3, 3) and conv.stride == (1, 1)
                and conv.padding == (1, 1) and conv.dilation == (1, 1) and conv.groups == 1
                and conv.padding_mode == "zeros"):
            raise ValueError(f"FactorisedBaseLearner needs PSPNet's 3x3 cls[0] conv, got {conv}")
        self.ppm, self.cls = learner.ppm, learner.cls

    def forward(self, x: Tensor) -> Tensor:
        """(B, C, h, w) layer4 features -> (B, num_classes, h, w) base-class logits."""
        conv = self.cls[0]
        size = (x.shape[-2], x.shape[-1])
        channels = x.shape[1]
        out = F.conv2d(x, conv.weight[:, :channels], conv.bias, padding=1)
        for branch in self.ppm.features:
            p = branch(x)
            weight = conv.weight[:, channels : channels + p.shape[1]]
            channels += p.shape[1]
            out += conv3x3_of_upsampled(p, weight.to(p.dtype), size).to(out.dtype)
        return self.cls[1:](out)
