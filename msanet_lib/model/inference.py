"""Evaluation-time preparation of a trained model: BatchNorm folding, a cheaper base learner, layout.

In evaluation every BatchNorm is a fixed per-channel affine map ``y = a * x + b`` with
``a = gamma / sqrt(running_var + eps)`` and ``b = beta - a * running_mean``. When it directly
follows a convolution whose output nothing else reads, it can be folded into that convolution
(weights scaled by ``a``, bias ``a * (bias - running_mean) + beta``), which saves one pass over
every backbone feature map. The outputs are the same function; only float rounding differs.

:func:`prepare_for_inference` returns such a folded copy (the trained model is never changed),
with the base learner's largest convolution factorised (half its multiply-adds, see
:class:`~msanet_lib.modules.base_learner.FactorisedBaseLearner`), optionally in
``channels_last`` memory format. ``msanet_lib.evaluation.evaluate`` and ``msanet-eval`` use it
by default.

Which (convolution, BatchNorm) pairs are folded:

- in every ``nn.Sequential``, a ``Conv2d`` immediately followed by a ``BatchNorm2d`` (the stem,
  the downsample shortcuts, VGG, the PPM branches and classifier of the base learner,
  ``hyper_final``);
- in modules that list them in a ``CONV_BN_PAIRS`` class attribute (ResNet blocks);
- except the convolutions whose pre-BatchNorm output is itself a feature, as listed by the
  backbone's ``convs_read_before_norm()`` (VGG's multi-similarity levels).
"""

from __future__ import annotations

import copy
from collections.abc import Iterable

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights

from msanet_lib.backbones.base import Backbone
from msanet_lib.modules.base_learner import BaseLearner, FactorisedBaseLearner
from msanet_lib.runtime import unwrap_model

# The box's bookkeeping (mask resizes, one host sync, crops and pastes) costs about 1.6 ms per
# forward. ResNet-50's 2048-channel layer4 at 473 px saves 68 GFLOP with the benchmark's support
# (scripts/benchmark.py --authors-code); the toy ResNet's 128-channel layer4 at 128 px saves less
# than the bookkeeping costs (shipped fold-0 model, 1 thread: 18.1 ms per episode with the box,
# 16.5 ms without). So by default only wide layer4 stages use it.
BOX_MIN_CHANNELS = 1024


def convs_read_before_norm(model: nn.Module) -> tuple[str, ...]:
    """The convolutions of ``model`` whose pre-BatchNorm output its backbone reads (never folded).

    A model built with ``share_backbone_layers`` (MSANet, PSPNet) keeps its backbone as the
    unregistered attribute ``_backbone``; a bare :class:`Backbone` answers for itself.
    """
    backbone = model if isinstance(model, Backbone) else getattr(model, "_backbone", None)
    return backbone.convs_read_before_norm() if isinstance(backbone, Backbone) else ()


def conv_bn_pairs(model: nn.Module, keep: Iterable[str] = ()) -> list[tuple[str, str]]:
    """Qualified names ``(conv, bn)`` of the BatchNorms of ``model`` that can be folded.

    Args:
        model: any module (see the module docstring for the pairs found).
        keep: convolutions to leave unfolded because their pre-BN output is read elsewhere.

    Returns:
        One ``(conv_name, bn_name)`` per foldable pair, in ``named_modules`` order.
    """
    keep = set(keep)
    pairs: list[tuple[str, str]] = []
    for name, module in model.named_modules():
        prefix = f"{name}." if name else ""
        if isinstance(module, nn.Sequential):
            children = list(module.named_children())
            candidates = [(a, b) for (a, _), (b, _) in zip(children, children[1:])]
        else:
            candidates = list(getattr(module, "CONV_BN_PAIRS", ()))
        for conv_name, bn_name in candidates:
            conv, bn = getattr(module, conv_name, None), getattr(module, bn_name, None)
            if (
                type(conv) is nn.Conv2d  # not a subclass whose forward could do more
                and type(bn) is nn.BatchNorm2d
                and bn.running_mean is not None
                and conv.out_channels == bn.num_features
                and prefix + conv_name not in keep
            ):
                pairs.append((prefix + conv_name, prefix + bn_name))
    return pairs


@torch.no_grad()
def fold_batch_norms(model: nn.Module, keep: Iterable[str] | None = None) -> int:
    """Fold every foldable BatchNorm of ``model`` into its convolution, IN PLACE.

    Each folded convolution gets the fused weight and a bias (``torch.nn.utils.fusion``); its
    BatchNorm becomes ``nn.Identity`` (so ``Sequential`` indices stay valid). Use it on a copy:
    :func:`prepare_for_inference` does.

    Args:
        model: a module in eval mode (BatchNorms with running statistics).
        keep: convolutions never folded; default :func:`convs_read_before_norm` of ``model``.

    Returns:
        The number of BatchNorms folded.

    Raises:
        ValueError: ``model`` is in training mode (its BatchNorms would use batch statistics).
    """
    if model.training:
        raise ValueError("fold_batch_norms needs a model in eval mode: call model.eval() first.")
    if keep is None:
        keep = convs_read_before_norm(model)
    def wide(t: torch.Tensor | None) -> torch.Tensor | None:
        return None if t is None else t.double()

    pairs = conv_bn_pairs(model, keep)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        dtype = conv.weight.dtype
        # In float64, so the fold adds only the final rounding to float32.
        weight, bias = fuse_conv_bn_weights(
            conv.weight.double(), wide(conv.bias), bn.running_mean.double(),
            bn.running_var.double(), bn.eps, wide(bn.weight), wide(bn.bias))
        conv.weight = nn.Parameter(weight.to(dtype), requires_grad=False)
        conv.bias = nn.Parameter(bias.to(dtype), requires_grad=False)
        model.set_submodule(bn_name, nn.Identity())
    return len(pairs)


def factorise_base_learners(model: nn.Module) -> int:
    """Replace every :class:`BaseLearner` in ``model`` by a :class:`FactorisedBaseLearner`, IN PLACE.

    Same function, half the multiply-adds of the base learner (see
    :class:`~msanet_lib.modules.base_learner.FactorisedBaseLearner`). Returns how many.
    """
    names = [name for name, m in model.named_modules() if isinstance(m, BaseLearner) and name]
    for name in names:
        model.set_submodule(name, FactorisedBaseLearner(model.get_submodule(name)))
    return len(names)


def _set_support_layer4_box(model: nn.Module, enabled: bool | None) -> None:
    """Switch an MSANet copy's support layer4 box on or off; None = where it pays, a layer4 of
    at least ``BOX_MIN_CHANNELS`` channels. Models without the box are left alone."""
    if hasattr(model, "use_support_layer4_box"):
        if enabled is None:
            enabled = model._backbone.channels[4] >= BOX_MIN_CHANNELS
        model.use_support_layer4_box(enabled)


def prepare_for_inference(
    model: nn.Module,
    *,
    fold_bn: bool = True,
    factorise_base_learner: bool = True,
    channels_last: bool = False,
    autocast_dtype: torch.dtype | None = None,
    support_layer4_box: bool | None = None,
) -> nn.Module:
    """An evaluation copy of ``model``: eval mode, no gradients, BatchNorms folded.

    Args:
        model: a trained model (MSANet, PSPNet, a backbone or any module; DDP and
            ``torch.compile`` wrappers are looked through). It is not modified.
        fold_bn: fold every foldable BatchNorm into its convolution (:func:`fold_batch_norms`).
        factorise_base_learner: run the base learner's first convolution on the pooled PPM
            branches before their upsampling (:func:`factorise_base_learners`).
        channels_last: store the copy's 4-D weights in ``channels_last`` memory format (faster
            convolutions on CPU; give it channels_last inputs too).
        autocast_dtype: the copy will only run under ``torch.autocast`` with this dtype
            (bfloat16, float16): store the convolution weights and biases in it already.
            Autocast rounds them to that dtype at every call anyway, so the outputs are the
            same and each forward saves a cast of every weight. Without autocast such a copy
            fails (float32 inputs, low-precision weights).
        support_layer4_box: an MSANet with a ResNet backbone computes the supports' layer4 only
            on the box their masks reach (:mod:`~msanet_lib.model.support_region`). None
            (default) = where it pays: a layer4 of at least ``BOX_MIN_CHANNELS`` channels.

    Returns:
        A deep copy in eval mode with ``requires_grad=False`` everywhere. Its outputs equal
        ``model.eval()``'s up to float rounding; its state dict differs (folded convolutions
        have a bias, folded BatchNorms are gone), so save the original, not the copy.
    """
    prepared = copy.deepcopy(unwrap_model(model)).eval().requires_grad_(False)
    if fold_bn:
        fold_batch_norms(prepared)
    if factorise_base_learner:
        factorise_base_learners(prepared)
    _set_support_layer4_box(prepared, support_layer4_box)
    if autocast_dtype is not None:
        for module in prepared.modules():
            if isinstance(module, nn.Conv2d):  # autocast runs every conv in autocast_dtype
                module.to(autocast_dtype)
    if channels_last:
        prepared = prepared.to(memory_format=torch.channels_last)
    return prepared


def prepare_for_training(
    model: nn.Module,
    *,
    factorise_base_learner: bool = True,
    support_layer4_box: bool | None = None,
) -> nn.Module:
    """A training copy of ``model`` whose frozen parts do less work; every tensor is shared.

    In stage 2 the backbone and the base learner are frozen and, with ``config.fix_bn``, every
    BatchNorm runs on its running statistics: the frozen parts compute the same fixed function
    as in evaluation, so they can skip work as :func:`prepare_for_inference` does (factorised
    base learner, supports' layer4 on the mask box), while the meta learner keeps its own
    BatchNorms and Dropouts and trains as written.

    The copy is new module objects around the very same tensors: every parameter and buffer of
    ``model`` is shared (no memory is copied), so an optimizer built on ``model``'s parameters
    trains both, and ``model.state_dict()`` stays the authors' layout (save ``model``, never the
    copy). BatchNorm is not folded here, unlike :func:`prepare_for_inference`: folding needs a
    second copy of the frozen weights (186 MB for ResNet-50 with its PSPNet head) and did not
    change the step time (scripts/benchmark.py --train-step, README "Speed").

    Args:
        model: an MSANet with ``config.fix_bn`` (any other model, or ``fix_bn`` off, is
            returned unchanged: BatchNorms on batch statistics would see other pixels in the box).
        factorise_base_learner: see :func:`prepare_for_inference`.
        support_layer4_box: compute the supports' layer4 only on the box their masks reach
            (:mod:`~msanet_lib.model.support_region`). None (default): for a layer4 of at
            least ``BOX_MIN_CHANNELS`` channels, on the CPU only, because the box's size is
            read on the host, a device sync the training loop avoids on accelerators.

    Returns:
        The copy, in ``model``'s training mode, or ``model`` itself when nothing applies.
        Its losses and gradients equal ``model``'s up to float rounding (and the same dropout
        draws: the frozen parts draw no random numbers except the base learner's Dropout2d,
        which sees a tensor of the same shape).
    """
    plain = unwrap_model(model)
    config = getattr(plain, "config", None)
    if not (hasattr(plain, "frozen_modules") and getattr(config, "fix_bn", False)):
        return model
    # memo hits for every tensor: deepcopy makes new modules around the same Parameters/buffers
    shared = {id(t): t for t in (*plain.parameters(), *plain.buffers())}
    copied = copy.deepcopy(plain, memo=shared)
    if factorise_base_learner:
        factorise_base_learners(copied)
    if support_layer4_box is None and next(plain.parameters()).device.type != "cpu":
        support_layer4_box = False  # the box's size is read on the host: a sync per step
    _set_support_layer4_box(copied, support_layer4_box)
    return copied
