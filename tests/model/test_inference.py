"""The evaluation copy (BatchNorm folded, channels_last) and the stage-2 training copy: same
function, original untouched; the training copy shares every tensor."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from msanet_lib.backbones import build_backbone
from msanet_lib.model.inference import (
    conv_bn_pairs,
    fold_batch_norms,
    prepare_for_inference,
    prepare_for_training,
)
from msanet_lib.model.msanet import MSANet, MSANetConfig
from msanet_lib.modules.base_learner import BaseLearner, FactorisedBaseLearner


def _batch_norms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def _randomise_statistics(model: nn.Module) -> None:
    """Non-trivial BatchNorm statistics, so folding is not the identity (init is 1/0/0/1)."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.running_mean.copy_(torch.randn(n, generator=g) * 0.5)
            m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
            m.weight.data.copy_(torch.rand(n, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(n, generator=g) * 0.1)


def _toy_msanet(shots: int = 2) -> MSANet:
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet_toy", shots=shots))
    _randomise_statistics(model)
    return model


def _episode(shots: int, size: int = 41) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, size, size, generator=g)
    s_x = torch.randn(2, shots, 3, size, size, generator=g)
    s_y = torch.zeros(2, shots, size, size, dtype=torch.long)
    s_y[..., 8:30, 10:25] = 1
    s_y[:, 0, :3] = 255
    return x, s_x, s_y


def test_prepared_copy_is_the_same_function_and_the_model_is_untouched() -> None:
    model = _toy_msanet().train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    prepared = prepare_for_inference(model)

    # The original: same weights, modules, mode and trainable parameters.
    after = model.state_dict()
    assert list(after) == list(before)
    assert all(torch.equal(after[k], v) and after[k].is_contiguous() for k, v in before.items())
    assert _batch_norms(model) == 29 and model.training
    assert [n for n, p in model.named_parameters() if p.requires_grad] == trainable
    # The copy: every BatchNorm of the toy ResNet MSANet folded, eval mode, no gradients.
    assert _batch_norms(prepared) == 0 and not prepared.training
    assert not any(p.requires_grad for p in prepared.parameters())

    x, s_x, s_y = _episode(2)
    model.eval()
    with torch.no_grad():  # float64: the fold is exact up to rounding
        ref = model.double()(x.double(), s_x.double(), s_y)
        out = prepare_for_inference(model)(x.double(), s_x.double(), s_y)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-10, rtol=0)


def test_float32_and_channels_last_copy_agree_within_1e4() -> None:
    model = _toy_msanet().eval()
    x, s_x, s_y = _episode(2)
    prepared = prepare_for_inference(model, channels_last=True)
    assert prepared.layer1[0].conv1.weight.is_contiguous(memory_format=torch.channels_last)
    assert model.layer1[0].conv1.weight.is_contiguous()
    with torch.inference_mode():
        ref = model(x, s_x, s_y)
        out = prepared(x.contiguous(memory_format=torch.channels_last), s_x, s_y)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=1e-4, rtol=0)


def test_vgg_keeps_the_batchnorms_after_its_feature_convolutions() -> None:
    backbone = build_backbone("vgg16_bn").eval()
    _randomise_statistics(backbone)
    pairs = conv_bn_pairs(backbone, backbone.convs_read_before_norm())
    assert len(pairs) == 13 - 6 and ("layer3.0", "layer3.1") not in pairs
    folded = prepare_for_inference(backbone.double())
    assert _batch_norms(folded) == 6  # the convs whose pre-BN output is a similarity level
    x = torch.randn(1, 3, 37, 37, dtype=torch.float64)
    with torch.no_grad():
        ref, out = backbone(x), folded(x)
    for a, b in zip(ref.layers + ref.feats, out.layers + out.feats):
        torch.testing.assert_close(a, b, atol=1e-9, rtol=1e-9)


def test_fold_batch_norms_needs_eval_mode() -> None:
    with pytest.raises(ValueError, match="eval mode"):
        fold_batch_norms(build_backbone("resnet_toy").train())


@pytest.mark.parametrize("size", [(7, 7), (9, 13)])
def test_factorised_base_learner_is_the_same_function(size: tuple[int, int]) -> None:
    torch.manual_seed(0)
    learner = BaseLearner(64, 5, hidden=8).eval()
    _randomise_statistics(learner)
    x = torch.randn(2, 64, *size).relu()
    factorised = FactorisedBaseLearner(learner)
    with torch.no_grad():
        torch.testing.assert_close(factorised.double()(x.double()), learner.double()(x.double()),
                                   atol=1e-12, rtol=0)
    prepared = prepare_for_inference(_toy_msanet())
    assert isinstance(prepared.learner_base, FactorisedBaseLearner)
    assert not isinstance(prepare_for_inference(_toy_msanet(), factorise_base_learner=False)
                          .learner_base, FactorisedBaseLearner)
    with pytest.raises(ValueError, match="3x3"):
        FactorisedBaseLearner(BaseLearner(64, 5, hidden=8).requires_grad_(False)
                              .apply(lambda m: setattr(m, "padding", (2, 2))
                                     if isinstance(m, nn.Conv2d) else None))


def test_weights_stored_in_the_autocast_dtype_give_the_same_outputs() -> None:
    model = _toy_msanet().eval()
    x, s_x, s_y = _episode(2)
    as_float = prepare_for_inference(model, channels_last=True)
    as_bf16 = prepare_for_inference(model, channels_last=True, autocast_dtype=torch.bfloat16)
    assert as_bf16.layer1[0].conv1.weight.dtype == torch.bfloat16
    x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        ref, out = as_float(x, s_x, s_y), as_bf16(x, s_x, s_y)
    for a, b in zip(out, ref):
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# ---------------------------------------------------------------- the stage-2 training copy
def _train_model(**overrides: object) -> MSANet:
    torch.manual_seed(0)
    model = MSANet(MSANetConfig(backbone="resnet_toy", shots=2, num_base_classes=5, **overrides))
    _randomise_statistics(model)
    return model.train()


def _batch(size: int = 41) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    s_y = torch.zeros(2, 2, size, size, dtype=torch.long)
    s_y[..., 8:30, 10:25] = 1
    s_y[:, 0, :3] = 255
    y_m = torch.zeros(2, size, size, dtype=torch.long)
    y_m[:, 5:20, 5:30] = 1
    y_m[:, -2:] = 255
    y_b = torch.randint(0, 5, (2, size, size), generator=g)
    return {"x": torch.randn(2, 3, size, size, generator=g),
            "s_x": torch.randn(2, 2, 3, size, size, generator=g),
            "s_y": s_y, "y_m": y_m, "y_b": y_b, "cat": torch.tensor([0, 3])}


def _step(net: nn.Module, batch: dict[str, torch.Tensor], seed: int = 7
          ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """Loss parts and the gradient of every trainable parameter of one training forward."""
    torch.manual_seed(seed)  # the same dropout draws for both nets
    out = net(batch["x"], batch["s_x"], batch["s_y"], batch["y_m"], batch["y_b"], batch["cat"])
    losses = torch.stack([out.main_loss, out.aux_loss1, out.aux_loss2])
    params = {n: p for n, p in net.named_parameters() if p.requires_grad}
    grads = torch.autograd.grad(losses.sum(), list(params.values()))
    return losses.detach(), dict(zip(params, grads))


def test_copy_shares_every_tensor_and_changes_only_frozen_modules() -> None:
    model = _train_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copy_ = prepare_for_training(model)
    assert copy_ is not model and copy_.training
    shared = {n: p for n, p in model.named_parameters() if p.requires_grad}
    theirs = {n: p for n, p in copy_.named_parameters() if p.requires_grad}
    assert list(theirs) == list(shared)
    assert all(theirs[n] is p for n, p in shared.items())  # the same objects, not copies
    # No memory copied: the frozen weights and every buffer are the model's tensors too.
    model_tensors = {id(t) for t in (*model.parameters(), *model.buffers())}
    assert all(id(t) in model_tensors for t in (*copy_.parameters(), *copy_.buffers()))
    # Nothing folded; the base learner runs factorised, on the same modules.
    assert _batch_norms(copy_) == _batch_norms(model) == 29
    assert isinstance(copy_.learner_base, FactorisedBaseLearner)
    assert copy_.learner_base.cls[0].weight is model.learner_base.cls[0].weight
    # The model itself is untouched: same keys, values, modules.
    after = model.state_dict()
    assert list(after) == list(before) and all(torch.equal(after[k], v) for k, v in before.items())
    assert isinstance(model.learner_base, BaseLearner)
    # An optimizer step on the model's parameters is a step of the copy too.
    with torch.no_grad():
        shared["cls_meta.3.bias"].add_(1.0)
    assert torch.equal(copy_.cls_meta[3].bias, shared["cls_meta.3.bias"])


def test_copy_gives_the_same_losses_and_gradients() -> None:
    model, batch = _train_model(), _batch()
    for box in (False, True):  # the toy layer4 keeps the box off by default; test it on too
        copy_ = prepare_for_training(model, support_layer4_box=box)
        assert (copy_._layer4_radii is not None) == box
        losses, grads = _step(model, batch)
        losses_c, grads_c = _step(copy_, batch)
        torch.testing.assert_close(losses_c, losses, rtol=1e-5, atol=1e-6)
        assert list(grads_c) == list(grads)
        for name, g in grads.items():
            torch.testing.assert_close(grads_c[name], g, rtol=1e-4, atol=1e-6, msg=name)
        assert any(g.abs().sum() > 0 for g in grads.values())


def test_nothing_to_prepare_returns_the_model() -> None:
    model = _train_model(fix_bn=False)  # BatchNorms on batch statistics: the box would change them
    assert prepare_for_training(model) is model
    plain = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4))
    assert prepare_for_training(plain) is plain
