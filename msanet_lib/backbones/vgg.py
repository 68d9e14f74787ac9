"""VGG16-bn cut into five stages exactly as the authors (spec §1.1-1.2).

The usual ``features`` Sequential of VGG16-bn (13 conv-BN-ReLU triples and 5 ceil-mode max-pools,
indices 0..43) is cut at fixed indices:

| stage  | ``features`` indices | content                               | out ch | size @473 |
|--------|----------------------|---------------------------------------|--------|-----------|
| layer0 | 0-6                  | 2 convs (64) + pool                   | 64     | 237       |
| layer1 | 7-13                 | 2 convs (128) + pool                  | 128    | 119       |
| layer2 | 14-23                | 3 convs (256) + pool                  | 256    | 60        |
| layer3 | 24-33                | 3 convs (512) + pool                  | 512    | 30        |
| layer4 | 34-42                | 3 convs (512), the last pool (43) dropped | 512 | 30        |

Each stage is a fresh Sequential, so its state-dict keys restart at 0 (``layer3.0.weight`` is
``features.24.weight``), which is how the authors' checkpoints name them.
"""

from __future__ import annotations

from torch import Tensor, nn

from msanet_lib.backbones.base import Backbone, BackboneOutput

# VGG16 configuration "D": conv widths, "M" = max-pool.
VGG16_CFG: tuple[int | str, ...] = (
    64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M",
)  # fmt: skip

# [start, stop) of each stage inside ``features``; index 43 (the last pool) is not used.
VGG_STAGE_BOUNDS: tuple[tuple[int, int], ...] = ((0, 7), (7, 14), (14, 24), (24, 34), (34, 43))

# Local indices of the convs inside layer3 and layer4 whose (pre-BN) outputs are similarity
# levels, as in the authors' extract_feat_vgg.
VGG_FEAT_CONV_INDICES: tuple[int, ...] = (0, 3, 6)


def vgg16_bn_features() -> nn.Sequential:
    """The 44-module ``features`` of VGG16-bn (conv 3x3 with bias, BN, ReLU; ceil-mode pools)."""
    modules: list[nn.Module] = []
    in_channels = 3
    for v in VGG16_CFG:
        if v == "M":
            modules.append(nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True))
        else:
            modules += [
                nn.Conv2d(in_channels, int(v), kernel_size=3, padding=1),
                nn.BatchNorm2d(int(v)),
                nn.ReLU(inplace=True),
            ]
            in_channels = int(v)
    return nn.Sequential(*modules)


class VGGBackbone(Backbone):
    """VGG16-bn as five stages; ``feats`` are the 7 maps of the authors' ``extract_feat_vgg``.

    ``feats`` (all 512 channels): the pre-BN outputs of the three convs of layer3 (size of
    layer2, e.g. 60 at 473), the pre-BN outputs of the three convs of layer4 (30 at 473), then
    the final layer4 output (the same tensor as ``layers[4]``). ``feat_groups`` = (3, 3, 1).
    """

    def __init__(self) -> None:
        super().__init__()
        self.name = "vgg16_bn"
        features = vgg16_bn_features()
        for i, (start, stop) in enumerate(VGG_STAGE_BOUNDS):
            setattr(self, f"layer{i}", nn.Sequential(*features[start:stop]))
        self.channels = (64, 128, 256, 512, 512)
        self.feat_groups = (3, 3, 1)
        self.num_feats = 7
        _init_weights(self)

    def forward(self, x: Tensor) -> BackboneOutput:
        """(B, 3, H, W) -> ``BackboneOutput`` with 5 stage outputs and 7 feats."""
        feat = x
        layers: list[Tensor] = []
        feats: list[Tensor] = []
        for stage_index, stage in enumerate(self.stages()):
            for local_index, module in enumerate(stage):
                feat = module(feat)
                # The captured conv output is read by BN (not in place) and never modified.
                if stage_index >= 3 and local_index in VGG_FEAT_CONV_INDICES:
                    feats.append(feat)
            layers.append(feat)
        feats.append(feat)
        return BackboneOutput(layers, feats)

    def convs_read_before_norm(self) -> tuple[str, ...]:
        """The six convolutions of layer3 and layer4 whose pre-BN outputs are ``feats``."""
        return tuple(f"layer{stage}.{i}" for stage in (3, 4) for i in VGG_FEAT_CONV_INDICES)


def _init_weights(model: nn.Module) -> None:
    """The authors' init: Kaiming-normal (fan_out, ReLU) convs with zero bias, BN 1/0."""
    for m in model.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


def vgg16_bn() -> VGGBackbone:
    """VGG16-bn backbone (channels 64, 128, 256, 512, 512)."""
    return VGGBackbone()
