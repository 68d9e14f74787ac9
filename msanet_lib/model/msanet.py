"""MSANet: multi-similarity and attention guidance for few-shot segmentation (Iqbal et al. 2022).

The model follows the paper's figure (and the authors' ``model/MSANet.py``; spec sections 1-2):

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

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.backbones import build_backbone, share_backbone_layers
from msanet_lib.model.validation import validate_episode
from msanet_lib.modules.aspp import ASPP
from msanet_lib.modules.attention import Attention
from msanet_lib.modules.base_learner import BaseLearner
from msanet_lib.modules.decoder import (
    aspp_reduction,
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
        self.res1_meta = aspp_reduction(5 * rd, rd)
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

    # ------------------------------------------------------------------ forward
    def forward_features(
        self,
        x: Tensor,
        s_x: Tensor,
        s_y: Tensor,
        cat_idx: object | None = None,
        validate: bool = True,
    ) -> dict[str, Tensor | None]:
        """All intermediates of one forward pass (for notebooks and debugging).

        Keys (h, w = layer3 size, B episodes, K shots):
            query_feat (B, 256, h, w), supp_feat (B, K, 256, h, w), prototypes (B, K, 256, 1, 1),
            prototype (B, 256, 1, 1), similarity_maps (B, n_maps, h, w), hyper (B, 64, h, w),
            priors (B, K, 1, h, w), prior (B, 1, h, w), gam (B, 256, h, w), est_val_total
            (B, K, 1, 1), kshot_weights (B, K, 1, 1), est_val (B, 1, 1, 1), merge_feat
            (B, 833, h, w), meta_logits_low (B, 2, h, w), base_logits_low (B, C_base, h, w),
            final_low (B, 2, h, w). Disabled branches give None.
        """
        cfg = self.config
        if validate:
            cat = validate_episode(
                x, s_x, s_y, cfg.shots, cat_idx=cat_idx, num_base_classes=cfg.num_base_classes
            )
        else:
            cat = cat_idx
        b, k = s_x.shape[:2]
        out: dict[str, Tensor | None] = {}

        with torch.no_grad():
            # Query and every shot of every episode through the frozen backbone at once.
            enc = self._backbone(torch.cat([x, s_x.reshape(b * k, *s_x.shape[2:])], dim=0))
        layers, block_feats = enc
        del enc
        q_layers = [t[:b] for t in layers]
        s_layers = [t[b:] for t in layers]  # (B*K, ...)
        size = tuple(q_layers[3].shape[-2:])

        mask = (s_y == 1).to(x.dtype)  # 255 (ignore) counts as background, as the authors
        mask_flat = mask.reshape(b * k, 1, *mask.shape[-2:])

        query_feat = self.down_query(_mid_level(q_layers))
        supp_feat = self.down_supp(_mid_level(s_layers))  # (B*K, 256, h, w)
        mask_down = F.interpolate(mask_flat, size=size, mode="bilinear", align_corners=True)
        prototypes = masked_average_pooling(supp_feat, mask_down).reshape(b, k, -1, 1, 1)
        out["query_feat"] = query_feat
        out["supp_feat"] = supp_feat.reshape(b, k, *supp_feat.shape[1:])
        out["prototypes"] = prototypes

        gam = None
        if cfg.use_attention:
            gam = self.gam(supp_feat, mask_flat)
            gam = gam.reshape(b, k, *gam.shape[1:]).mean(dim=1)
        out["gam"] = gam

        similarity_maps = hyper = None
        if cfg.use_multi_similarity:
            s_feats = [t[b:].reshape(b, k, *t.shape[1:]) for t in block_feats]
            q_feats = [t[:b] for t in block_feats]
            similarity_maps = self.multi_similarity(q_feats, s_feats, mask)
            hyper = self.hyper_final(similarity_maps)
            del q_feats, s_feats
        # The per-block features are the bulk of the backbone's memory (about 220 MB per
        # ResNet-50 image at 473 px); release them before the decoder runs.
        del block_feats
        out["similarity_maps"] = similarity_maps
        out["hyper"] = hyper

        s_low = s_layers[2].reshape(b, k, *s_layers[2].shape[1:])
        est_val_total = scene_difference(q_layers[2], s_low)
        weights = kshot_weights(est_val_total, getattr(self, "kshot_rw", None), cfg.kshot_order)
        est_val = (weights * est_val_total).sum(dim=1, keepdim=True)
        out["est_val_total"], out["kshot_weights"], out["est_val"] = est_val_total, weights, est_val

        s_high = s_layers[4].reshape(b, k, *s_layers[4].shape[1:])
        priors = prior_mask(q_layers[4], s_high, mask, size)
        w5 = weights[..., None]  # (B, K, 1, 1, 1)
        prior = (w5 * priors).sum(dim=1)
        prototype = (w5 * prototypes).sum(dim=1)
        out["priors"], out["prior"], out["prototype"] = priors, prior, prototype

        parts = [query_feat, prototype.expand(-1, -1, *size)]
        if hyper is not None:
            parts.append(hyper)
        parts.append(prior)
        if gam is not None:
            parts.append(gam)
        dtype = query_feat.dtype
        merge_feat = torch.cat([p.to(dtype) for p in parts], dim=1)
        out["merge_feat"] = merge_feat

        q = self.ASPP_meta(self.init_merge(merge_feat))
        q = self.res1_meta(q)
        q = self.res2_meta(q) + q
        meta_logits = self.cls_meta(q)
        out["meta_logits_low"] = meta_logits

        base_logits = None
        if cfg.use_base_learner:
            with torch.no_grad():
                base_logits = self.learner_base(q_layers[4])
        out["base_logits_low"] = base_logits

        exclude = None
        if self.training and cfg.use_base_learner:
            if cat is None:
                raise ValueError(
                    "cat_idx ((B,) base-class index of each episode) is required in training mode "
                    "to exclude the episode's own class from the base learner's map"
                )
            exclude = cat.to(x.device) + 1
        out["final_low"] = ensemble(
            meta_logits,
            est_val,
            self.gram_merge,
            getattr(self, "cls_merge", None),
            base_logits,
            exclude,
        )
        return out

    def forward(
        self,
        x: Tensor,
        s_x: Tensor,
        s_y: Tensor,
        y_m: Tensor | None = None,
        y_b: Tensor | None = None,
        cat_idx: object | None = None,
    ) -> MSANetOutput | MSANetTrainOutput:
        """See the class docstring."""
        cfg = self.config
        cat = validate_episode(
            x,
            s_x,
            s_y,
            cfg.shots,
            y_m=y_m,
            y_b=y_b,
            cat_idx=cat_idx,
            num_base_classes=cfg.num_base_classes,
            training=self.training,
        )
        feats = self.forward_features(x, s_x, s_y, cat, validate=False)
        size = x.shape[-2:]

        def up(t: Tensor | None) -> Tensor | None:
            if t is None:
                return None
            return F.interpolate(t, size=size, mode="bilinear", align_corners=True)

        final_out = up(feats["final_low"])
        meta_out = up(feats["meta_logits_low"])
        base_out = up(feats["base_logits_low"])
        if not self.training:
            return MSANetOutput(final_out, meta_out, base_out)
        losses = msanet_losses(final_out, meta_out, base_out, y_m, y_b)
        return MSANetTrainOutput(final_out.argmax(dim=1), *losses)

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
