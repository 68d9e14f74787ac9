"""Multi-similarity: dense query-support cosine maps from every backbone block (spec 1.4-1.5).

MSANet's "multi-similarity" module compares the query with the support at many depths. For
each block feature F^l (one per bottleneck, see ``BackboneOutput.feats``) and each query
pixel q it averages the (clamped) cosine similarity to the selected foreground support
pixels S^l:

    s_hat(p) = F_s^l(p) M^l(p) / (||F_s^l(p) M^l(p)|| + 1e-5)            (support columns)
    q_hat(q) = F_q^l(q) / (||F_q^l(q)|| + 1e-5)                           (query columns)
    C^l(q)   = 1/|S^l| * sum_{p in S^l} max(0, <q_hat(q), s_hat(p)>)

where M^l is the soft (bilinearly resized) support mask at that block's resolution and S^l
keeps the pixels whose mask value is at least the mean of the positive mask values. One map
per block; the maps are grouped by stage [layer2 blocks, layer3 blocks, layer4 blocks], averaged
over the shots and fed to ``hyper_final`` (1x1 conv + BN + ReLU, 64 channels).

Reproduced quirks of the authors' code (needed for numerical equivalence):
- The mask resizes are *chained*: the full mask is first resized to twice the width of the
  first block feature (a square), then each time the block size changes the already resized
  mask is resized again (473 -> 238 -> 119 -> 60 for ResNet-50).
- The blocks before the three groups (ResNet layer1 block 3) only take part in that chain; the
  authors compute their correlation and then discard it, we skip it.
- VGG, K > 1: the layer2 group comes from the last shot only (not the shot average).
- An empty support mask gives all-zero maps (the authors substitute a zero column).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.runtime import padded_length, pixel_rows

CORR_EPS = 1e-5


def chained_mask_resize(mask: Tensor, feat_sizes: list[tuple[int, int]]) -> list[Tensor]:
    """The support mask at every block resolution, resized in the authors' chained way.

    Args:
        mask: (N, 1, H, W) float binary mask at image resolution.
        feat_sizes: (h, w) of every block feature, in the backbone's order.

    Returns:
        One (N, 1, h_l, w_l) soft mask per block. Consecutive blocks of equal size share the
        same tensor object (so selections can be computed once per resolution).
    """
    first_w = feat_sizes[0][1]
    current = F.interpolate(mask, size=(2 * first_w, 2 * first_w), mode="bilinear", align_corners=True)
    out = []
    for size in feat_sizes:
        if tuple(current.shape[-2:]) != tuple(size):
            current = F.interpolate(current, size=size, mode="bilinear", align_corners=True)
        out.append(current)
    return out


def select_support_pixels(mask: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """Indices of the support pixels kept by the authors' rule ``m >= mean(m[m > 0])``.

    The number of kept pixels differs per sample, so the selection is returned padded, to the
    largest count on the CPU and to all ``hw`` pixels on accelerators (no host sync,
    :func:`~msanet_lib.runtime.padded_length`):

    Args:
        mask: (N, hw) soft mask values.

    Returns:
        index: (N, n_max) long, selected pixel indices first (in pixel order), then padding.
        valid: (N, n_max) bool, True for real (non-padding) entries.
        count: (N,) number of selected pixels (0 for an empty mask).
    """
    positive = mask > 0
    n_pos = positive.sum(dim=1, keepdim=True)
    mean_pos = (mask * positive).sum(dim=1, keepdim=True) / n_pos.clamp(min=1)
    selected = positive & (mask >= mean_pos)
    count = selected.sum(dim=1)
    n_max = padded_length(count, mask.shape[1])  # static (all pixels) on accelerators: no sync
    # A stable sort on "not selected" puts the selected pixels first, in their original order.
    order = torch.argsort((~selected).to(torch.uint8), dim=1, stable=True)
    index = order[:, :n_max]
    valid = torch.arange(n_max, device=mask.device) < count[:, None]
    return index, valid, count


def block_similarity(
    query: Tensor,
    support: Tensor,
    mask: Tensor,
    selection: tuple[Tensor, Tensor, Tensor],
    eps: float = CORR_EPS,
) -> Tensor:
    """One block's similarity map C^l for every episode and shot.

    Args:
        query: (B, C, h, w) query block feature.
        support: (B, K, C, h, w) support block features.
        mask: (B*K, h*w) soft support masks at this resolution.
        selection: output of :func:`select_support_pixels` for ``mask``.
        eps: added to the column norms.

    Returns:
        (B, K, h, w) mean clamped cosine similarity to the selected support pixels.
    """
    b, k, c, h, w = support.shape
    index, valid, count = selection
    n = index.shape[1]
    # Pixels as rows (pixel_rows): views of NCHW and channels_last maps alike.
    q = pixel_rows(query / (query.norm(dim=1, keepdim=True) + eps))  # (B, hw, C)
    # Gather-with-padding instead of a dense (hw x hw) cosine with a selection weight: the
    # selected set is usually a fraction of the image (the interior of the object), so the
    # matmul shrinks by hw/n. Measured on this project's 2-core CPU (torch 2.14, 1-shot, 473 px,
    # one 60x60 block with C=1024, a 200x100 px box -> 325 selected pixels): 41 ms with the
    # gather, 342 ms for the dense cosine; both agree to 4e-9.
    s = pixel_rows(support.reshape(b * k, c, h, w))
    s = s.gather(1, index[:, :, None].expand(-1, -1, c))  # (B*K, n, C)
    s = s * mask.gather(1, index).to(s.dtype)[:, :, None]
    s = s / (s.norm(dim=2, keepdim=True) + eps)
    s = s * valid[:, :, None].to(s.dtype)  # padding rows give cosine 0, i.e. add nothing
    s = s.reshape(b, k * n, c)
    corr = q.bmm(s.transpose(1, 2)).clamp_(min=0)  # (B, hw, K*n), all shots in one bmm
    corr = corr.reshape(b, h * w, k, n).sum(dim=3)
    corr = corr / count.clamp(min=1).reshape(b, 1, k).to(corr.dtype)
    return corr.transpose(1, 2).reshape(b, k, h, w)


class MultiSimilarity(nn.Module):
    """Stacked multi-layer similarity maps (the input of ``hyper_final``). No parameters.

    Args:
        feat_groups: how many of the LAST block features form the layer2, layer3 and layer4
            groups (``Backbone.feat_groups``), e.g. (4, 6, 3) for ResNet-50.
        shallow_group_from_last_shot: reproduce the authors' VGG behaviour of taking the
            layer2 group from the last shot only instead of the shot average.
        eps: norm epsilon of the cosine.
    """

    def __init__(
        self,
        feat_groups: tuple[int, int, int],
        shallow_group_from_last_shot: bool = False,
        eps: float = CORR_EPS,
    ) -> None:
        super().__init__()
        self.feat_groups = tuple(int(g) for g in feat_groups)
        self.shallow_group_from_last_shot = shallow_group_from_last_shot
        self.eps = eps

    @property
    def num_maps(self) -> int:
        return sum(self.feat_groups)

    def per_shot(self, query_feats: list[Tensor], supp_feats: list[Tensor], supp_mask: Tensor) -> list[Tensor]:
        """Per-shot maps of the three groups.

        Args:
            query_feats: block features of the query, each (B, C_l, h_l, w_l).
            supp_feats: block features of the supports, each (B, K, C_l, h_l, w_l).
            supp_mask: (B, K, H, W) float binary support masks at image resolution.

        Returns:
            [layer2 group, layer3 group, layer4 group], each (B, K, g, h_g, w_g).
        """
        if len(query_feats) != len(supp_feats):
            raise ValueError(
                f"query_feats and supp_feats must have the same length, got "
                f"{len(query_feats)} and {len(supp_feats)}"
            )
        n_used = self.num_maps
        if len(query_feats) < n_used:
            raise ValueError(
                f"feat_groups {self.feat_groups} needs at least {n_used} block features, "
                f"got {len(query_feats)}"
            )
        b, k, hh, ww = supp_mask.shape
        sizes = [tuple(f.shape[-2:]) for f in query_feats]
        masks = chained_mask_resize(supp_mask.reshape(b * k, 1, hh, ww), sizes)
        first = len(query_feats) - n_used
        selections: dict[int, tuple[Tensor, Tensor, Tensor]] = {}
        maps = []
        for level in range(first, len(query_feats)):
            mask = masks[level].flatten(1)
            key = id(masks[level])
            if key not in selections:  # one selection per distinct resolution
                selections[key] = select_support_pixels(mask)
            maps.append(
                block_similarity(query_feats[level], supp_feats[level], mask, selections[key], self.eps)
            )
        g2, g3, _ = self.feat_groups
        return [
            torch.stack(maps[:g2], dim=2),
            torch.stack(maps[g2 : g2 + g3], dim=2),
            torch.stack(maps[g2 + g3 :], dim=2),
        ]

    def forward(self, query_feats: list[Tensor], supp_feats: list[Tensor], supp_mask: Tensor) -> Tensor:
        """Shot-averaged similarity maps, ordered shallow to deep.

        Args: as :meth:`per_shot`.

        Returns:
            (B, g2 + g3 + g4, h, w) at the resolution of the layer3 group.
        """
        l2, l3, l4 = self.per_shot(query_feats, supp_feats, supp_mask)
        hyper_2 = l2[:, -1] if self.shallow_group_from_last_shot else l2.mean(dim=1)
        hyper_3 = l3.mean(dim=1)
        hyper_4 = l4.mean(dim=1)
        size = hyper_3.shape[-2:]
        if hyper_2.shape[-2:] != size:  # VGG: layer2 group is at twice the resolution
            hyper_2 = F.interpolate(hyper_2, size=size, mode="bilinear", align_corners=True)
        if hyper_4.shape[-2:] != size:
            hyper_4 = F.interpolate(hyper_4, size=size, mode="bilinear", align_corners=True)
        return torch.cat([hyper_2, hyper_3, hyper_4], dim=1)


def hyper_final_head(num_maps: int, hyper_dim: int = 64) -> nn.Sequential:
    """``hyper_final``: Conv1x1(num_maps -> hyper_dim, bias) + BatchNorm + ReLU.

    (B, num_maps, h, w) -> (B, hyper_dim, h, w). State-dict names ``0.*`` (conv), ``1.*`` (BN).
    """
    return nn.Sequential(
        nn.Conv2d(num_maps, hyper_dim, kernel_size=1, bias=True),
        nn.BatchNorm2d(hyper_dim),
        nn.ReLU(inplace=True),
    )
