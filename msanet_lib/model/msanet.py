"""MSANet: multi-similarity and attention guidance for few-shot segmentation (Iqbal et al. 2022).

The model follows the paper's figure (and the authors' ``model/MSANet.py``; spec sections 1-2):

Its forward reads as the figure: ``encode`` -> ``guidance`` -> ``meta_learner`` ->
``base_learner`` -> ``ensemble``, and ``forward_record`` keeps every intermediate.

1. A frozen backbone encodes the query and all support images in ONE batch.
2. Meta learner inputs, at the layer3 resolution (60x60 at 473 px for ResNet):
   - query features   ``down_query(cat[layer3, layer2])``                       (B, 256, h, w)
   - prototype        masked average pooling of ``down_supp`` support features  (B, 256, 1, 1)
   - multi-similarity per-block cosine maps -> ``hyper_final``                  (B, 64, h, w)
   - prior mask       PFENet prior on layer4                                     (B, 1, h, w)
   - attention        ``gam`` gated support features                            (B, 256, h, w)
   concatenated into ``merge_feat`` (833 channels), then ``init_merge`` -> ``ASPP_meta`` ->
   ``res1_meta`` -> ``res2_meta`` (+ skip) -> ``cls_meta`` = meta logits (B, 2, h, w).
3. The frozen base learner (PSPNet head) predicts base classes on the query layer4 map.
4. Ensemble (BAM): Gram-matrix scene difference and the base learner's base-class mass adjust
   the meta prediction into ``final_out``.
With K shots, prototypes, priors and the scene difference are combined with the K-shot
weights; multi-similarity and attention are plain shot means.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import BackboneOutput, build_backbone, share_backbone_layers
from msanet_lib.model.support_region import run_stage, stage_radii, support_layer4_box
from msanet_lib.model.validation import validate_episode
from msanet_lib.modules.aspp import ASPP
from msanet_lib.modules.attention import Attention
from msanet_lib.modules.base_learner import BaseLearner
from msanet_lib.modules.decoder import (
    classifier,
    feature_reduction,
    merge_block,
    residual_block,
)
from msanet_lib.modules.ensemble import ensemble, merge_conv, scene_difference
from msanet_lib.modules.kshot import KSHOT_ORDERS, kshot_reweighter, kshot_weights
from msanet_lib.modules.losses import msanet_losses
from msanet_lib.modules.masked_pooling import masked_average_pooling
from msanet_lib.modules.multi_similarity import MultiSimilarity, hyper_final_head
from msanet_lib.modules.prior import prior_mask

BACKBONES = ("resnet50", "resnet101", "vgg16_bn", "resnet_toy")


@dataclass
class MSANetConfig:
    """Hyper-parameters of :class:`MSANet`. Defaults are the authors' PASCAL ResNet-50 1-shot.

    Attributes:
        backbone: one of ``resnet50``, ``resnet101``, ``vgg16_bn``, ``resnet_toy``.
        shots: K, support images per episode.
        num_base_classes: base learner outputs incl. background (16 PASCAL, 61 COCO).
        reduce_dim: width of the meta learner (256).
        hyper_dim: output channels of ``hyper_final`` (64).
        base_hidden: hidden width of the PSPNet classifier (512).
        kshot_trans_dim: hidden width of ``kshot_rw`` (2; 0 = single conv initialised to 1/K).
        kshot_order: "authors" (identity gather, as MSANet) or "bam" (BAM's corrected gather).
        use_multi_similarity, use_attention, use_base_learner: ablation switches; all True is
            MSANet, all False is the prototype + prior baseline (PFENet-like meta learner).
        fix_bn: keep every BatchNorm in eval mode in ``train()`` (the authors' ``fix_bn: True``).
    """

    backbone: str = "resnet50"
    shots: int = 1
    num_base_classes: int = 16
    reduce_dim: int = 256
    hyper_dim: int = 64
    base_hidden: int = 512
    kshot_trans_dim: int = 2
    kshot_order: str = "authors"
    use_multi_similarity: bool = True
    use_attention: bool = True
    use_base_learner: bool = True
    fix_bn: bool = True

    def __post_init__(self) -> None:
        if self.backbone not in BACKBONES:
            raise ValueError(f"config.backbone must be one of {BACKBONES}, got {self.backbone!r}")
        if int(self.shots) < 1:
            raise ValueError(f"config.shots must be >= 1, got {self.shots}")
        if self.num_base_classes < 2:
            raise ValueError(f"config.num_base_classes must be >= 2 (incl. background), got {self.num_base_classes}")
        for name in ("reduce_dim", "hyper_dim", "base_hidden"):
            if getattr(self, name) < 1:
                raise ValueError(f"config.{name} must be >= 1, got {getattr(self, name)}")
        if self.kshot_trans_dim < 0:
            raise ValueError(f"config.kshot_trans_dim must be >= 0, got {self.kshot_trans_dim}")
        if self.kshot_order not in KSHOT_ORDERS:
            raise ValueError(f"config.kshot_order must be one of {KSHOT_ORDERS}, got {self.kshot_order!r}")


class MSANetOutput(NamedTuple):
    """Eval-mode outputs, all at the input size (bilinear, align_corners=True).

    final_out: (B, 2, H, W) ensemble scores; meta_out: (B, 2, H, W) meta learner logits;
    base_out: (B, C_base, H, W) base learner logits (None when ``use_base_learner`` is False).
    """

    final_out: Tensor
    meta_out: Tensor
    base_out: Tensor | None


class MSANetTrainOutput(NamedTuple):
    """Training-mode outputs: pred (B, H, W) argmax of final_out and the three losses."""

    pred: Tensor
    main_loss: Tensor
    aux_loss1: Tensor
    aux_loss2: Tensor


class Encoding(NamedTuple):
    """Stage (1): the frozen backbone's outputs for B episodes of K shots.

    query: layer0..layer4 of the queries, each (B, C_i, h_i, w_i); support: the same for the
    shots, (B*K, C_i, h_i, w_i), episode-major; query_blocks and support_blocks: every residual
    block's output (from layer1's last on) for the queries (B, C, h, w) and for the shots
    (B*K, C, h, w), used by multi-similarity only.
    """

    query: list[Tensor]
    support: list[Tensor]
    query_blocks: list[Tensor] | tuple[()]
    support_blocks: list[Tensor] | tuple[()]
    episodes: int
    shots: int

    @classmethod
    def split(cls, layers: Sequence[Tensor], blocks: Sequence[Tensor], episodes: int,
              shots: int) -> Encoding:
        """From backbone outputs of cat[queries, shots] (B + B*K images): views, no copy."""
        b = episodes
        return cls([t[:b] for t in layers], [t[b:] for t in layers], [t[:b] for t in blocks],
                   [t[b:] for t in blocks], episodes, shots)


@dataclass(frozen=True)
class GuidanceCues:
    """Stage (2): what guides the meta learner, at the layer3 size (h, w); rd = reduce_dim.

    query_feat (B, rd, h, w), supp_feat (B, K, rd, h, w), prototypes (B, K, rd, 1, 1) and the
    K-shot weighted prototype (B, rd, 1, 1); similarity_maps (B, n_blocks, h, w) and their
    ``hyper_final`` encoding hyper (B, hyper_dim, h, w); priors (B, K, 1, h, w) and prior
    (B, 1, h, w); gam (B, rd, h, w); scene difference per shot est_val_total (B, K, 1, 1), the
    K-shot weights kshot_weights (B, K, 1, 1) and their combination est_val (B, 1, 1, 1).
    Disabled branches (ablations) are None.
    """

    query_feat: Tensor
    supp_feat: Tensor
    prototypes: Tensor
    prototype: Tensor
    similarity_maps: Tensor | None
    hyper: Tensor | None
    priors: Tensor
    prior: Tensor
    gam: Tensor | None
    est_val_total: Tensor
    kshot_weights: Tensor
    est_val: Tensor

    def concatenate(self) -> Tensor:
        """The meta learner's input (B, 2 rd + hyper_dim + 1 + rd, h, w) = 833 channels at rd 256:
        query features, tiled prototype, hyper, prior, gam, in the authors' order."""
        parts = [self.query_feat, self.prototype.expand(-1, -1, *self.query_feat.shape[-2:])]
        parts += [self.hyper] if self.hyper is not None else []
        parts.append(self.prior)
        parts += [self.gam] if self.gam is not None else []
        dtype = self.query_feat.dtype
        return torch.cat([t.to(dtype) for t in parts], dim=1)


@dataclass(frozen=True)
class MSANetRecord:
    """Every intermediate of one forward pass (``MSANet.forward_record``), at the layer3 size.

    cues: :class:`GuidanceCues`; merge_feat: their concatenation; meta_logits_low (B, 2, h, w);
    base_logits_low (B, C_base, h, w) or None; final_low (B, 2, h, w), the ensemble's scores.
    """

    cues: GuidanceCues
    merge_feat: Tensor
    meta_logits_low: Tensor
    base_logits_low: Tensor | None
    final_low: Tensor

    def tensors(self) -> dict[str, Tensor | None]:
        """Every intermediate by name, in the order of the forward pass (cues first)."""
        named = {f.name: getattr(self.cues, f.name) for f in fields(self.cues)}
        return named | {f.name: getattr(self, f.name) for f in fields(self) if f.name != "cues"}


def _upsample(t: Tensor, size: torch.Size) -> Tensor:
    return F.interpolate(t, size=size, mode="bilinear", align_corners=True)


def _mid_level(layers: list[Tensor]) -> Tensor:
    """cat[layer3, layer2]; layer2 is resized to layer3's size when they differ (VGG)."""
    l2, l3 = layers[2], layers[3]
    if l2.shape[-2:] != l3.shape[-2:]:
        l2 = F.interpolate(l2, size=l3.shape[-2:], mode="bilinear", align_corners=True)
    return torch.cat([l3, l2], dim=1)


class MSANet(nn.Module):
    """The full MSANet (meta learner + frozen backbone and base learner + ensemble).

    Call ``model(x, s_x, s_y, y_m=None, y_b=None, cat_idx=None)``:
        x: (B, 3, H, W) query images; s_x: (B, K, 3, H, W); s_y: (B, K, H, W) labels 0/1/255;
        y_m: (B, H, W) query label (training); y_b: (B, H, W) base label (training);
        cat_idx: (B,) 0-based base-class index of each episode (training with a base learner).
    Eval returns :class:`MSANetOutput`, training returns :class:`MSANetTrainOutput`.

    The state-dict keys and their order are the authors' (checkpoints load unchanged).
    """

    def __init__(self, config: MSANetConfig | None = None) -> None:
        super().__init__()
        self.config = config = config or MSANetConfig()
        backbone = build_backbone(config.backbone)
        # The stages are registered directly on the model (keys ``layer0.*`` ... as the authors);
        # the Backbone object is an unregistered attribute ``self._backbone`` that runs them.
        share_backbone_layers(self, backbone)
        object.__setattr__(self, "_backbone", backbone)
        channels = tuple(backbone.channels)
        if config.use_base_learner:
            self.learner_base = BaseLearner(channels[4], config.num_base_classes, config.base_hidden)

        rd = config.reduce_dim
        self.down_query = feature_reduction(channels[3] + channels[2], rd)
        self.down_supp = feature_reduction(channels[3] + channels[2], rd)
        merge_in = 2 * rd + 1
        if config.use_multi_similarity:
            merge_in += config.hyper_dim
        if config.use_attention:
            merge_in += rd
        self.init_merge = merge_block(merge_in, rd)
        self.ASPP_meta = ASPP(rd)
        self.res1_meta = merge_block(5 * rd, rd)
        self.res2_meta = residual_block(rd)
        self.cls_meta = classifier(rd, 2)
        self.gram_merge = merge_conv()
        if config.use_base_learner:
            self.cls_merge = merge_conv()
        if config.shots > 1:
            self.kshot_rw = kshot_reweighter(config.shots, config.kshot_trans_dim)
        if config.use_attention:
            self.gam = Attention(rd)
        if config.use_multi_similarity:
            self.multi_similarity = MultiSimilarity(
                tuple(backbone.feat_groups),
                # The authors' VGG branch takes the layer2 group from the last shot only.
                shallow_group_from_last_shot=config.backbone.startswith("vgg"),
            )
            self.hyper_final = hyper_final_head(self.multi_similarity.num_maps, config.hyper_dim)
        # The training engine sets this once its dataset has checked the episodes, so the hot
        # path does not pay the host syncs of the value checks at every step.
        self.trusted_inputs = False
        # Set on evaluation copies only (use_support_layer4_box): the block radii of layer4.
        self._layer4_radii: list[int] | None = None
        self.freeze_pretrained()

    # ------------------------------------------------------------------ frozen parts
    def frozen_modules(self) -> list[nn.Module]:
        """The backbone stages and the base learner: pretrained, never trained here."""
        mods: list[nn.Module] = [self.layer0, self.layer1, self.layer2, self.layer3, self.layer4]
        if self.config.use_base_learner:
            mods.append(self.learner_base)
        return mods

    def freeze_pretrained(self) -> None:
        """Set ``requires_grad=False`` on the backbone and the base learner."""
        for module in self.frozen_modules():
            for p in module.parameters():
                p.requires_grad_(False)

    def train(self, mode: bool = True) -> MSANet:
        """Standard ``train()``, then (``config.fix_bn``) every BatchNorm back to eval mode.

        Dropout layers, including the base learner's Dropout2d, stay active in training as in
        the authors' runs; BatchNorm statistics (also ``hyper_final``'s) are never updated.
        """
        super().train(mode)
        self._backbone.training = mode
        if mode and self.config.fix_bn:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self

    # ------------------------------------------------------------------ forward, as Fig. 2
    def forward(
        self,
        x: Tensor,
        s_x: Tensor,
        s_y: Tensor,
        y_m: Tensor | None = None,
        y_b: Tensor | None = None,
        cat_idx: object | None = None,
        *,
        encoding: Encoding | None = None,
    ) -> MSANetOutput | MSANetTrainOutput:
        """See the class docstring. Checks its inputs unless ``self.trusted_inputs`` is set.

        ``encoding``: the backbone's :class:`Encoding` of ``(x, s_x)`` when it was computed
        elsewhere (the evaluation's feature cache, :mod:`msanet_lib.evaluation.cached_encoder`);
        everything after ``encode`` then runs as usual. It must equal ``self.encode(x, s_x)``
        in the entries the later stages read (:meth:`encoding_reads`).
        """
        cfg = self.config
        cat = cat_idx
        if not self.trusted_inputs:
            cat = validate_episode(x, s_x, s_y, cfg.shots, y_m=y_m, y_b=y_b, cat_idx=cat_idx,
                                   num_base_classes=cfg.num_base_classes, training=self.training)
        record = self._record(x, s_x, s_y, cat, encoding)
        size = x.shape[-2:]
        final_out = _upsample(record.final_low, size)
        meta_out = _upsample(record.meta_logits_low, size)
        base_out = _upsample(record.base_logits_low, size) if record.base_logits_low is not None else None
        if not self.training:
            return MSANetOutput(final_out, meta_out, base_out)
        losses = msanet_losses(final_out, meta_out, base_out, y_m, y_b)
        return MSANetTrainOutput(final_out.argmax(dim=1), *losses)

    def forward_record(
        self, x: Tensor, s_x: Tensor, s_y: Tensor, cat_idx: object | None = None
    ) -> MSANetRecord:
        """One forward pass with every intermediate kept (notebooks, tests, debugging).

        Same inputs and checks as ``forward``; returns an :class:`MSANetRecord` at the layer3
        size instead of upsampled outputs.
        """
        cat = validate_episode(x, s_x, s_y, self.config.shots, cat_idx=cat_idx,
                               num_base_classes=self.config.num_base_classes)
        return self._record(x, s_x, s_y, cat)

    def _record(self, x: Tensor, s_x: Tensor, s_y: Tensor, cat: Tensor | None,
                encoding: Encoding | None = None) -> MSANetRecord:
        """The paper's figure, top to bottom, on already checked inputs.

        ``encoding`` (the backbone's outputs for ``(x, s_x)``, e.g. from a feature cache)
        replaces stage (1); every later stage is the same code either way.
        """
        mask = (s_y == 1).to(x.dtype)  # 255 (ignore) counts as background, as the authors
        if encoding is None:
            encoding = self.encode(x, s_x, mask)
        elif (encoding.episodes, encoding.shots) != tuple(s_x.shape[:2]):
            raise ValueError(f"encoding holds {encoding.episodes} episodes of {encoding.shots} "
                             f"shots, the inputs {tuple(s_x.shape[:2])}")
        cues = self.guidance(encoding, mask)
        # The per-block features are the bulk of the backbone's memory (about 220 MB per
        # ResNet-50 image at 473 px): drop them before the decoder runs.
        encoding = encoding._replace(query_blocks=(), support_blocks=())
        merge_feat = cues.concatenate()
        meta_logits = self.meta_learner(merge_feat)
        base_logits = self.base_learner(encoding)
        final = self.ensemble(meta_logits, cues.est_val, base_logits, cat)
        return MSANetRecord(cues, merge_feat, meta_logits, base_logits, final)

    def encode(self, x: Tensor, s_x: Tensor, support_mask: Tensor | None = None) -> Encoding:
        """(1) The frozen backbone on the query and every shot of every episode in one batch.

        x: (B, 3, H, W), s_x: (B, K, 3, H, W) -> :class:`Encoding`. support_mask: (B, K, H, W)
        float (1 = target); only read by an evaluation copy that computes the supports' layer4
        on the cells the masks reach (:meth:`use_support_layer4_box`).
        """
        b, k = s_x.shape[:2]
        images = torch.cat([x, s_x.reshape(b * k, *s_x.shape[2:])])
        if support_mask is None or self._layer4_radii is None:
            layers, blocks = self.encode_images(images)
            return Encoding.split(layers, blocks, b, k)
        with torch.no_grad():
            return self._encode_support_layer4_on_box(images, b, k, support_mask)

    def use_support_layer4_box(self, enabled: bool = True) -> bool:
        """Compute the supports' layer4 only on the box their masks reach (evaluation copies).

        Same outputs up to float rounding, fewer operations: see
        :mod:`msanet_lib.model.support_region`. Possible for the ResNet backbones (stride-1
        residual blocks); returns whether it is now on.
        """
        self._layer4_radii = stage_radii(self.layer4) if enabled else None
        return self._layer4_radii is not None

    def _encode_support_layer4_on_box(self, images: Tensor, b: int, k: int, support_mask: Tensor
                                      ) -> Encoding:
        """``encode`` with the supports' layer4 exact on the cells read only.

        The query's and the supports' layer4 maps stay separate tensors (an Encoding keeps
        them apart anyway): concatenating four (B + B*K, 2048, 60, 60) maps cost more than
        the box saved.
        """
        head = self._backbone(images, stages=4)  # layer0..layer3 and their blocks
        layers, blocks = list(head.layers), list(head.feats)
        feat3 = layers[3]
        size = (feat3.shape[-2], feat3.shape[-1])
        flat = support_mask.reshape(-1, 1, *support_mask.shape[-2:])
        block_sizes = [tuple(t.shape[-2:]) for t in blocks] + [size] * len(self.layer4)
        box = support_layer4_box(flat, block_sizes, size)
        query_out, query_pres = run_stage(self.layer4, feat3[:b])
        supp_out, supp_pres = run_stage(self.layer4, feat3[b:], box, self._layer4_radii)
        head = Encoding.split(layers, blocks, b, k)
        return Encoding(head.query + [query_out], head.support + [supp_out],
                        head.query_blocks + query_pres, head.support_blocks + supp_pres, b, k)

    def encode_images(self, images: Tensor) -> BackboneOutput:
        """The frozen backbone on a batch of images, without gradients.

        images: (N, 3, H, W) -> ``BackboneOutput(layers, feats)``: layer0..layer4 (N, C_i, h_i,
        w_i) and every residual block's output (N, C, h, w), as :class:`Encoding` holds them.
        """
        with torch.no_grad():
            return self._backbone(images)

    def encoding_reads(self) -> tuple[tuple[int, ...], int]:
        """Which entries of an :class:`Encoding` the stages after ``encode`` read.

        Returns ``(layers, first_block)``: the indices of the layer0..layer4 maps read (layer2
        and layer3 for the reduced features, layer4 for the prior and the base learner; layer0
        and layer1 never), and the index of the first block whose values are read. The blocks
        before it (ResNet's layer1 block; all of them without multi-similarity) only lend
        their size to the chained mask resize, so a feature cache may keep their shape only.
        """
        n_blocks = self._backbone.num_feats
        if not self.config.use_multi_similarity:
            return (2, 3, 4), n_blocks
        return (2, 3, 4), n_blocks - self.multi_similarity.num_maps

    def guidance(self, encoding: Encoding, mask: Tensor) -> GuidanceCues:
        """(2) The guidance the meta learner receives, at the layer3 size (h, w).

        mask: (B, K, H, W) float support masks (1 = target). Prototype: masked average pooling
        ``p = sum(F * M) / sum(M)`` of ``down_supp`` features; multi-similarity: per-block cosine
        maps of the query against the masked support; prior: PFENet's max-cosine map on layer4;
        attention: GAM-gated support features. The K shots' prototypes and priors are combined
        with the K-shot weights of the scene difference (BAM); multi-similarity and attention
        are plain shot means.
        """
        cfg, b, k = self.config, encoding.episodes, encoding.shots
        q, s = encoding.query, encoding.support
        size = tuple(q[3].shape[-2:])
        mask_flat = mask.reshape(b * k, 1, *mask.shape[-2:])

        query_feat = self.down_query(_mid_level(q))
        supp_feat = self.down_supp(_mid_level(s))  # (B*K, rd, h, w)
        mask_low = F.interpolate(mask_flat, size=size, mode="bilinear", align_corners=True)
        prototypes = masked_average_pooling(supp_feat, mask_low).reshape(b, k, -1, 1, 1)

        similarity_maps = hyper = None
        if cfg.use_multi_similarity:
            q_blocks = list(encoding.query_blocks)
            s_blocks = [t.reshape(b, k, *t.shape[1:]) for t in encoding.support_blocks]
            similarity_maps = self.multi_similarity(q_blocks, s_blocks, mask)
            hyper = self.hyper_final(similarity_maps)

        priors = prior_mask(q[4], s[4].reshape(b, k, *s[4].shape[1:]), mask, size)

        gam = None
        if cfg.use_attention:
            gam = self.gam(supp_feat, mask_flat)
            gam = gam.reshape(b, k, *gam.shape[1:]).mean(dim=1)

        est_val_total = scene_difference(q[2], s[2].reshape(b, k, *s[2].shape[1:]))
        weights = kshot_weights(est_val_total, getattr(self, "kshot_rw", None), cfg.kshot_order)
        w5 = weights[..., None]  # (B, K, 1, 1, 1)
        return GuidanceCues(
            query_feat=query_feat,
            supp_feat=supp_feat.reshape(b, k, *supp_feat.shape[1:]),
            prototypes=prototypes,
            prototype=(w5 * prototypes).sum(dim=1),
            similarity_maps=similarity_maps,
            hyper=hyper,
            priors=priors,
            prior=(w5 * priors).sum(dim=1),
            gam=gam,
            est_val_total=est_val_total,
            kshot_weights=weights,
            est_val=(weights * est_val_total).sum(dim=1, keepdim=True),
        )

    def meta_learner(self, merge_feat: Tensor) -> Tensor:
        """(3) ``init_merge`` -> ``ASPP_meta`` -> ``res1_meta`` -> ``res2_meta`` (+ skip) -> ``cls_meta``.

        merge_feat: (B, C_merge, h, w) -> meta logits (B, 2, h, w).
        """
        q = self.res1_meta(self.ASPP_meta(self.init_merge(merge_feat)))
        q = self.res2_meta(q) + q
        return self.cls_meta(q)

    def base_learner(self, encoding: Encoding) -> Tensor | None:
        """(4) The frozen PSPNet head on the query's layer4: (B, C_base, h, w), or None."""
        if not self.config.use_base_learner:
            return None
        with torch.no_grad():
            return self.learner_base(encoding.query[4])

    def ensemble(
        self, meta_logits: Tensor, est_val: Tensor, base_logits: Tensor | None, cat: Tensor | None
    ) -> Tensor:
        """(5) BAM's ensemble: the scene difference and the base classes' mass adjust the meta map.

        In training the episode's own class is removed from the base map (``cat``: (B,) base-class
        indices). Returns (B, 2, h, w).
        """
        exclude = None
        if self.training and base_logits is not None:
            if cat is None:
                raise ValueError(
                    "cat_idx ((B,) base-class index of each episode) is required in training mode "
                    "to exclude the episode's own class from the base learner's map"
                )
            exclude = cat.to(meta_logits.device) + 1
        return ensemble(meta_logits, est_val, self.gram_merge, getattr(self, "cls_merge", None),
                        base_logits, exclude)

    def extra_repr(self) -> str:
        c = self.config
        return f"backbone={c.backbone}, shots={c.shots}, kshot_order={c.kshot_order}"


def msanet_for_shots(
    fields: Mapping[str, Any], state_dict: Mapping[str, Tensor], shots: int | None = None,
    **overrides: Any,
) -> MSANet:
    """Rebuild a trained MSANet from its config fields and weights, for ``shots`` shots.

    A model trained with K shots keeps K. A 1-shot model (no ``kshot_rw``) asked for K > 1 shots
    gets ``kshot_trans_dim = 0``: ``kshot_rw`` is then one 1x1 conv initialised to 1/K, so every
    shot receives the same weight and the shots are averaged uniformly (PFENet-style). Other
    ``overrides`` change config fields; tensors whose shape they change keep their initial
    values.

    Raises:
        ValueError: a K-shot model (K > 1) asked for another K, or weights that do not fit.
    """
    fields = dict(fields)
    trained = int(fields.get("shots", 1))
    if shots is not None and shots != trained:
        if trained != 1:
            raise ValueError(f"shots={shots}: this model was trained with {trained} shots and its "
                             "kshot_rw only takes that many; evaluate it with that K.")
        fields.update(shots=shots, kshot_trans_dim=0)
    model = MSANet(MSANetConfig(**{**fields, **overrides}))
    own = model.state_dict()
    usable = {k: v for k, v in state_dict.items() if k in own and own[k].shape == v.shape}
    model.load_state_dict(usable, strict=False)
    unexpected = [k for k in state_dict if k not in own and not k.startswith("kshot_rw.")]
    lost = [k for k in own if k not in usable and not (k.startswith("kshot_rw.") and trained == 1)]
    if (unexpected or lost) and not overrides:
        raise ValueError(f"The weights do not fit MSANet({fields}): missing {lost[:5]}, "
                         f"unexpected {unexpected[:5]}.")
    return model
