"""Builders for the meta learner's projection and decoder blocks (spec sections 1.3, 1.8).

Each builder returns an ``nn.Sequential`` whose indices give the authors' state-dict names:

- ``feature_reduction`` (``down_query``, ``down_supp``): Conv1x1(C_in -> 256, no bias) + ReLU +
  Dropout2d(0.5), applied to concat[layer3, layer2]: (B, 1536, h, w) -> (B, 256, h, w).
- ``merge_block`` (``init_merge``, ``res1_meta``): Conv1x1(C_in -> 256, no bias) + ReLU, on
  merge_feat (833 -> 256) and on the ASPP output (1280 -> 256): the authors use the same block
  for both.
- ``residual_block`` (``res2_meta``): [Conv3x3(256 -> 256, no bias) + ReLU] x 2; the model adds
  the skip connection, q = res2(q) + q.
- ``classifier`` (``cls_meta``): Conv3x3 + ReLU + Dropout2d(0.1) + Conv1x1(256 -> 2, bias),
  giving the meta learner's background/foreground logits (B, 2, h, w).
"""

from __future__ import annotations

from torch import nn


def feature_reduction(in_channels: int, out_channels: int = 256, dropout: float = 0.5) -> nn.Sequential:
    """(B, in_channels, h, w) -> (B, out_channels, h, w)."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Dropout2d(p=dropout),
    )


def merge_block(in_channels: int, out_channels: int = 256) -> nn.Sequential:
    """(B, in_channels, h, w) -> (B, out_channels, h, w)."""
    return nn.Sequential(nn.Conv2d(in_channels, out_channels, kernel_size=1, bias=False), nn.ReLU(inplace=True))


def residual_block(channels: int = 256) -> nn.Sequential:
    """(B, C, h, w) -> (B, C, h, w), without the skip (the caller adds it)."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        nn.ReLU(inplace=True),
    )


def classifier(channels: int = 256, num_classes: int = 2, dropout: float = 0.1) -> nn.Sequential:
    """(B, C, h, w) -> (B, num_classes, h, w) logits."""
    return nn.Sequential(
        nn.Conv2d(channels, channels, kernel_size=3, padding=1, bias=False),
        nn.ReLU(inplace=True),
        nn.Dropout2d(p=dropout),
        nn.Conv2d(channels, num_classes, kernel_size=1),
    )
