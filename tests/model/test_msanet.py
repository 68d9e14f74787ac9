"""MSANet end to end on the toy backbone: outputs, batching, training semantics, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from msanet_lib.model.msanet import MSANet, MSANetConfig, MSANetOutput, MSANetTrainOutput
from msanet_lib.modules.ensemble import ensemble

SIZE = 41


def _model(shots: int = 1, **kw: object) -> MSANet:
    torch.manual_seed(0)
    cfg = MSANetConfig(backbone="resnet_toy", shots=shots, reduce_dim=32, hyper_dim=8, base_hidden=16, **kw)
    return MSANet(cfg)


def _episode(b: int = 2, k: int = 1, seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    s_y = torch.zeros(b, k, SIZE, SIZE, dtype=torch.long)
    s_y[..., 8:30, 10:25] = 1
    s_y[..., :3, :] = 255
    y_m = torch.zeros(b, SIZE, SIZE, dtype=torch.long)
    y_m[:, 5:20, 5:30] = 1
    return {
        "x": torch.randn(b, 3, SIZE, SIZE, generator=g),
        "s_x": torch.randn(b, k, 3, SIZE, SIZE, generator=g),
        "s_y": s_y,
        "y_m": y_m,
        "y_b": torch.randint(0, 16, (b, SIZE, SIZE), generator=g),
        "cat_idx": torch.tensor([0, 7][:b]),
    }


def _train_step(model: MSANet, ep: dict[str, torch.Tensor]) -> MSANetTrainOutput:
    return model(ep["x"], ep["s_x"], ep["s_y"], ep["y_m"], ep["y_b"], [ep["cat_idx"]])


@pytest.mark.parametrize("shots", [1, 3])
def test_eval_outputs_and_batch_equals_per_episode(shots: int) -> None:
    model = _model(shots).eval()
    ep = _episode(2, shots)
    ep["s_y"][1, 0, 15:, :] = 0  # episodes differ in their masks (different selection counts)
    with torch.no_grad():
        out = model(ep["x"], ep["s_x"], ep["s_y"])
        singles = [model(ep["x"][i : i + 1], ep["s_x"][i : i + 1], ep["s_y"][i : i + 1]) for i in range(2)]
    assert isinstance(out, MSANetOutput)
    assert out.final_out.shape == (2, 2, SIZE, SIZE) and out.base_out.shape == (2, 16, SIZE, SIZE)
    for field in MSANetOutput._fields:
        batched = getattr(out, field)
        single = torch.cat([getattr(s, field) for s in singles])
        assert torch.allclose(batched, single, atol=1e-5), field


def test_shot_order_only_matters_through_kshot_weights() -> None:
    model = _model(3, kshot_order="bam").eval()
    ep = _episode(1, 3)
    ep["s_y"][0, 1, 20:] = 0
    perm = torch.tensor([2, 0, 1])
    with torch.no_grad():
        a = model(ep["x"], ep["s_x"], ep["s_y"]).final_out
        b = model(ep["x"], ep["s_x"][:, perm], ep["s_y"][:, perm]).final_out
    # with BAM's corrected gather every shot keeps its own weight: permutation invariant
    assert torch.allclose(a, b, atol=1e-5)
    authors = _model(3).eval()  # identity gather: weights follow the shot position instead
    with torch.no_grad():
        wa = authors.forward_record(ep["x"], ep["s_x"], ep["s_y"]).cues.kshot_weights
        wb = authors.forward_record(ep["x"], ep["s_x"][:, perm], ep["s_y"][:, perm]).cues.kshot_weights
    assert torch.allclose(wa, wb)


def test_training_returns_losses_and_gradients_reach_only_trainable_parts() -> None:
    model = _model(2).train()
    out = _train_step(model, _episode(2, 2))
    assert isinstance(out, MSANetTrainOutput)
    assert out.pred.shape == (2, SIZE, SIZE) and out.pred.dtype == torch.long
    (out.main_loss + out.aux_loss1 + out.aux_loss2).backward()
    for module in model.frozen_modules():
        for p in module.parameters():
            assert not p.requires_grad and p.grad is None
    trainable = [n for n, p in model.named_parameters() if p.requires_grad]
    assert trainable and not any(n.startswith(("layer", "learner_base")) for n in trainable)
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    assert missing == []
    assert not out.aux_loss2.requires_grad  # the frozen base learner gets no gradient


def test_fix_bn_keeps_batchnorm_in_eval_and_dropout_active() -> None:
    model = _model().train()
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert bns and all(not m.training for m in bns)
    assert model.learner_base[1][3].training  # base learner Dropout2d active, as the authors
    assert model.down_query[2].training
    before = model.hyper_final[1].running_mean.clone()
    _train_step(model, _episode())
    assert torch.equal(model.hyper_final[1].running_mean, before)
    free = MSANet(MSANetConfig(backbone="resnet_toy", fix_bn=False)).train()
    assert free.hyper_final[1].training


def test_training_ensemble_excludes_episode_class() -> None:
    model = _model().train()
    with torch.no_grad():
        model.cls_merge.weight.copy_(torch.tensor([1.0, -2.0]).reshape(1, 2, 1, 1))
    ep = _episode()
    record = model.forward_record(ep["x"], ep["s_x"], ep["s_y"], ep["cat_idx"])
    args = (record.meta_logits_low, record.cues.est_val, model.gram_merge, model.cls_merge, record.base_logits_low)
    assert torch.allclose(record.final_low, ensemble(*args, exclude=ep["cat_idx"] + 1))
    assert not torch.allclose(record.final_low, ensemble(*args))
    with pytest.raises(ValueError, match="cat_idx"):
        model.forward_record(ep["x"], ep["s_x"], ep["s_y"])


@pytest.mark.parametrize("training", [False, True])
def test_empty_support_masks_are_finite(training: bool) -> None:
    model = _model(2).train(training)
    ep = _episode(2, 2)
    ep["s_y"][0] = 0
    ep["s_y"][1, 1] = 255
    out = _train_step(model, ep) if training else model(ep["x"], ep["s_x"], ep["s_y"])
    assert all(torch.isfinite(t).all() for t in out)


def test_ablation_switches_shrink_merge_and_drop_base() -> None:
    full = _model()
    assert full.init_merge[0].in_channels == 2 * 32 + 8 + 1 + 32
    base_only = _model(use_multi_similarity=False, use_attention=False, use_base_learner=False).eval()
    assert base_only.init_merge[0].in_channels == 2 * 32 + 1
    names = {n.split(".")[0] for n in base_only.state_dict()}
    assert not names & {"gam", "hyper_final", "learner_base", "cls_merge"}
    ep = _episode()
    with torch.no_grad():
        out = base_only(ep["x"], ep["s_x"], ep["s_y"])
        feats = base_only.forward_record(ep["x"], ep["s_x"], ep["s_y"])
    assert out.base_out is None and feats.cues.similarity_maps is None and feats.cues.gam is None
    expected = ensemble(feats.meta_logits_low, feats.cues.est_val, base_only.gram_merge)
    assert torch.allclose(feats.final_low, expected)
    base_only.train()
    losses = _train_step(base_only, ep)
    assert losses.aux_loss2.item() == 0.0 and torch.isfinite(losses.main_loss)


def test_forward_record_shapes() -> None:
    model = _model(2).eval()
    ep = _episode(2, 2)
    with torch.no_grad():
        f = model.forward_record(ep["x"], ep["s_x"], ep["s_y"])
    h = f.cues.query_feat.shape[-1]
    assert f.merge_feat.shape == (2, 2 * 32 + 8 + 1 + 32, h, h)
    assert f.cues.similarity_maps.shape == (2, 6, h, h)  # resnet_toy groups (2, 2, 2)
    assert f.cues.kshot_weights.shape == (2, 2, 1, 1)
    assert torch.allclose(f.cues.kshot_weights.sum(1), torch.ones(2, 1, 1))
    assert f.cues.prior.min() >= 0 and f.cues.prior.max() <= 1 + 1e-6


def test_channels_last_and_bfloat16_autocast() -> None:
    model = _model(2).eval()
    ep = _episode(2, 2)
    with torch.no_grad():
        ref = model(ep["x"], ep["s_x"], ep["s_y"])
        model_cl = model.to(memory_format=torch.channels_last)
        x_cl = ep["x"].contiguous(memory_format=torch.channels_last)
        out_cl = model_cl(x_cl, ep["s_x"], ep["s_y"])
        with torch.autocast("cpu", dtype=torch.bfloat16):
            out_bf = model_cl(x_cl, ep["s_x"], ep["s_y"])
    assert torch.allclose(out_cl.final_out, ref.final_out, atol=1e-4)
    assert all(torch.isfinite(t.float()).all() for t in out_bf)
    assert (out_bf.final_out.float() - ref.final_out).abs().max() < 0.1
    model.train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = _train_step(model, ep)
    out.main_loss.backward()
    assert torch.isfinite(out.main_loss)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        (lambda e: e.update(s_y=e["s_y"].clone().fill_(2)), "s_y must only contain"),
        (lambda e: e.update(s_y=e["s_y"][..., :-1]), "s_y must have shape"),
        (lambda e: e.update(s_x=e["s_x"][:, :1]), "shots=2"),
        (lambda e: e.update(x=e["x"].long()), "x must be a floating"),
        (lambda e: e.update(x=e["x"][0]), "x must have 4 dimensions"),
        (lambda e: e.update(s_x=e["s_x"][..., :-2]), r"s_x must have shape"),
        (lambda e: e.update(y_m=e["y_m"] * 3), "y_m must only contain"),
        (lambda e: e.update(y_m=None), "y_m"),
        (lambda e: e.update(y_b=e["y_b"] + 16), "y_b must only contain"),
        (lambda e: e.update(y_b=e["y_b"][:, :-1]), "y_b must have shape"),
        (lambda e: e.update(cat_idx=torch.tensor([0.5, 1.0])), "cat_idx"),
        (lambda e: e.update(cat_idx=torch.tensor([0, 15])), "cat_idx values"),
        (lambda e: e["x"].__setitem__((0, 0, 0, 0), float("nan")), "x holds 1 NaN"),
        (lambda e: e["s_x"].__setitem__((1, 1, 2, 3, 3), float("inf")), "s_x holds 1 NaN or Inf"),
        (lambda e: e.update(s_y=e["s_y"] == 1), "s_y is a bool tensor"),
        (lambda e: e.update(y_m=e["y_m"] == 1), "y_m is a bool tensor"),
        (lambda e: e.update(s_y=(e["s_y"] == 1).long() * 255), "0/255 mask"),
    ],
)
def test_validation_errors(change: object, match: str) -> None:
    model = _model(2).train()
    ep = _episode(2, 2)
    change(ep)
    with pytest.raises(ValueError, match=match):
        _train_step(model, ep)


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="config.backbone"):
        MSANetConfig(backbone="resnet18")
    with pytest.raises(ValueError, match="kshot_order"):
        MSANetConfig(kshot_order="sorted")
    with pytest.raises(ValueError, match="shots"):
        MSANetConfig(shots=0)


def test_forward_is_the_upsampled_record_and_trusted_inputs_skip_only_the_checks() -> None:
    model = _model(2).eval()
    ep = _episode(2, 2)
    with torch.no_grad():
        out = model(ep["x"], ep["s_x"], ep["s_y"])
        record = model.forward_record(ep["x"], ep["s_x"], ep["s_y"])
        size = ep["x"].shape[-2:]
        up = torch.nn.functional.interpolate(record.final_low, size=size, mode="bilinear",
                                             align_corners=True)
        torch.testing.assert_close(out.final_out, up)
        assert record.merge_feat.shape[1] == model.init_merge[0].in_channels
        bad = ep["s_y"].clone()
        bad[0, 0, 0, 0] = 7  # not a label value
        with pytest.raises(ValueError, match="s_y"):
            model(ep["x"], ep["s_x"], bad)
        model.trusted_inputs = True
        model(ep["x"], ep["s_x"], bad)  # the engine's path: no value check, no host sync
        torch.testing.assert_close(model(ep["x"], ep["s_x"], ep["s_y"]).final_out, out.final_out)


def test_float16_autocast_with_large_activations_stays_finite() -> None:
    # Gram matrices and the prior's dot products pass float16's 65504 at these magnitudes; they
    # run in float32 under autocast (runtime.float32_autocast_off). Without it final_out is NaN.
    model = _model(1).eval()
    ep = _episode(2, 1)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.float16):
        out = model(ep["x"] * 4, ep["s_x"] * 4, ep["s_y"])
    assert all(torch.isfinite(t.float()).all() for t in out)
    from msanet_lib.modules.prior import prior_mask

    q, s = torch.randn(1, 64, 6, 6) * 40, torch.randn(1, 1, 64, 6, 6) * 40
    mask = torch.ones(1, 1, 24, 24)
    ref = prior_mask(q, s, mask, (6, 6))
    with torch.autocast("cpu", dtype=torch.float16):
        half = prior_mask(q.half(), s.half(), mask.half(), (6, 6))
    assert half.dtype == torch.float32 and (half - ref).abs().max() < 1e-2
