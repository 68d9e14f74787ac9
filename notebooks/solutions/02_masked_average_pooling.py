"""Worked solutions of notebook 02 · Masked average pooling and prototypes."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from msanet_lib.model.baselines import PrototypeBaseline, minmax

EPS = 5e-4


def _map(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(N, C, h, w), (N, 1, h, w) -> (N, C, 1, 1) masked average (the authors' Weighted_GAP)."""
    return (feat * mask).sum(dim=(2, 3), keepdim=True) / (mask.sum(dim=(2, 3), keepdim=True) + EPS)


def kshot_prototype(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, K, C, h, w) features, (B, K, 1, h, w) masks -> (B, C, 1, 1) mean of K prototypes."""
    b, k, c, h, w = feat.shape
    protos = _map(feat.reshape(b * k, c, h, w), mask.reshape(b * k, 1, h, w))
    return protos.reshape(b, k, c, 1, 1).mean(dim=1)


def panet_predict(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                  supp_mask: torch.Tensor) -> torch.Tensor:
    """Nearest of the foreground and background prototypes by cosine: (N, h, w) 0/1."""
    fg = _map(supp_feat, supp_mask)
    bg = _map(supp_feat, 1 - supp_mask)
    sims = torch.stack([F.cosine_similarity(query_feat, p, dim=1, eps=1e-7) for p in (bg, fg)],
                       dim=1)
    return sims.argmax(dim=1)


def area_resize(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(N, H, W) 0/1/255 label -> (N, 1, h, w) share of foreground pixels in each cell."""
    fg = (mask == 1).float().unsqueeze(1)
    return F.adaptive_avg_pool2d(fg, size)


class AreaPrototypeBaseline(PrototypeBaseline):
    """``PrototypeBaseline`` whose support masks are resized by area, not bilinearly."""

    @torch.no_grad()
    def similarity(self, x: torch.Tensor, s_x: torch.Tensor, s_y: torch.Tensor) -> torch.Tensor:
        b, k = s_x.shape[:2]
        feats = self._mid(torch.cat([x, s_x.flatten(0, 1)]))
        q, s = feats[:b], feats[b:]
        mask = area_resize(s_y.flatten(0, 1), s.shape[-2:])                 # the one change
        proto = _map(s, mask).view(b, k, -1, 1, 1).mean(1)
        cos = minmax(F.cosine_similarity(q, proto, dim=1, eps=1e-7))
        return F.interpolate(cos[:, None], size=x.shape[-2:], mode="bilinear",
                             align_corners=True)[:, 0]


def make_area_baseline(backbone: torch.nn.Module, threshold: float) -> torch.nn.Module:
    """The prototype baseline with area-resized support masks."""
    return AreaPrototypeBaseline(backbone, threshold=threshold).eval()


# --- Typical mistakes: each check must reject every function below. -------------------------

def kshot_prototype_pooled_together(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Pools all K shots' pixels into one prototype (weights shots by their mask area)."""
    b, k, c, h, w = feat.shape
    f = feat.permute(0, 2, 1, 3, 4).reshape(b, c, k * h, w)
    m = mask.permute(0, 2, 1, 3, 4).reshape(b, 1, k * h, w)
    return _map(f, m)


def kshot_prototype_no_eps(feat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Forgets the epsilon: a plain masked mean, off the authors' Weighted_GAP."""
    b, k, c, h, w = feat.shape
    f, m = feat.reshape(b * k, c, h, w), mask.reshape(b * k, 1, h, w)
    protos = (f * m).sum(dim=(2, 3), keepdim=True) / m.sum(dim=(2, 3), keepdim=True)
    return protos.reshape(b, k, c, 1, 1).mean(dim=1)


def panet_predict_swapped(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                          supp_mask: torch.Tensor) -> torch.Tensor:
    """Stacks [foreground, background]: argmax index 1 then means background."""
    fg = _map(supp_feat, supp_mask)
    bg = _map(supp_feat, 1 - supp_mask)
    sims = torch.stack([F.cosine_similarity(query_feat, p, dim=1, eps=1e-7) for p in (fg, bg)],
                       dim=1)
    return sims.argmax(dim=1)


def panet_predict_float(query_feat: torch.Tensor, supp_feat: torch.Tensor,
                        supp_mask: torch.Tensor) -> torch.Tensor:
    """Returns a float comparison (fg > bg) instead of a long label map."""
    fg = F.cosine_similarity(query_feat, _map(supp_feat, supp_mask), dim=1, eps=1e-7)
    bg = F.cosine_similarity(query_feat, _map(supp_feat, 1 - supp_mask), dim=1, eps=1e-7)
    return (fg > bg).float()


def area_resize_ignore_is_foreground(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Uses ``mask > 0``: the 255 pixels count as foreground mass."""
    return F.adaptive_avg_pool2d((mask > 0).float().unsqueeze(1), size)


def area_resize_nearest(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Uses nearest-neighbour sampling: a point sample again, which misses the thin bar."""
    return F.interpolate((mask == 1).float().unsqueeze(1), size=size, mode="nearest")


class _BilinearBaseline(PrototypeBaseline):
    pass


def make_area_baseline_unchanged(backbone: torch.nn.Module, threshold: float) -> torch.nn.Module:
    """Returns the unchanged baseline: the bilinear resize drops the thin bar."""
    return _BilinearBaseline(backbone, threshold=threshold).eval()


class _FirstShotOnly(PrototypeBaseline):
    @torch.no_grad()
    def similarity(self, x: torch.Tensor, s_x: torch.Tensor, s_y: torch.Tensor) -> torch.Tensor:
        feats = self._mid(torch.cat([x, s_x[:, 0]]))
        q, s = feats[: x.shape[0]], feats[x.shape[0]:]
        proto = _map(s, area_resize(s_y[:, 0], s.shape[-2:]))
        cos = minmax(F.cosine_similarity(q, proto, dim=1, eps=1e-7))
        return F.interpolate(cos[:, None], size=x.shape[-2:], mode="bilinear",
                             align_corners=True)[:, 0]


def make_area_baseline_first_shot(backbone: torch.nn.Module, threshold: float) -> torch.nn.Module:
    """Uses only the first support: the K shots are not averaged."""
    return _FirstShotOnly(backbone, threshold=threshold).eval()


MISTAKES = {
    "kshot_prototype": [kshot_prototype_pooled_together, kshot_prototype_no_eps],
    "panet_predict": [panet_predict_swapped, panet_predict_float],
    "area_resize": [area_resize_ignore_is_foreground, area_resize_nearest],
    "make_area_baseline": [make_area_baseline_unchanged, make_area_baseline_first_shot],
}
