"""Stage 2: meta-train MSANet on base-class episodes (BAM's ``train.py`` with MSANet's configs).

The backbone (``layer0..4``) and the base learner (``learner_base`` = PSPNet ``ppm`` + ``cls``)
come from stage 1 and stay frozen; every BatchNorm is in eval mode (``fix_bn``), dropout stays
active. The loss is ``main + aux_weight1 * aux1 + aux_weight2 * aux2`` (spec §2; aux2 carries no
gradient because the base learner is frozen, as in BAM issue #4). SGD, momentum 0.9,
weight decay 1e-4, poly decay per iteration with every group at 10x ``base_lr``.

After every epoch the model is validated on the *test* fold's novel classes (``val_episodes``
episodes, seed ``val_seed``, the evaluation protocol of :mod:`msanet_lib.evaluation`); the best
mIoU selects ``best.pth``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from msanet_lib.backbones.state_dicts import match_state_dict, read_weights_file
from msanet_lib.data.datasets import collate_episodes
from msanet_lib.evaluation.protocol import evaluate
from msanet_lib.model.checkpoints import adapt_to_model, is_pspnet_part
from msanet_lib.model.inference import prepare_for_training
from msanet_lib.model.msanet import MSANet
from msanet_lib.training.checkpoint import EXPORT_FORMAT, FORMAT
from msanet_lib.training.config import TrainConfig
from msanet_lib.training.data import base_labels_note, episode_dataset, lists_note
from msanet_lib.training.distributed import DistContext
from msanet_lib.training.engine import Recipe, StageSpec, StepOutput


def load_base_learner(model: MSANet, path: str | Path) -> str:
    """Load the frozen backbone + base learner into ``model`` from a stage-1 file.

    ``path`` is a stage-1 checkpoint or export of this library, a stage-2 one (whose frozen
    backbone and base learner are the stage-1 weights it was trained with), or one of the
    authors' ``initmodel/PSPNet/.../best.pth`` files. Every backbone and base-learner tensor must be
    present; the meta learner's tensors are left as initialised.

    Raises:
        FileNotFoundError: no file at ``path``.
        ValueError: the file does not fit this model (another backbone or class count).
    """
    how = ("Train it first (`msanet-train --stage base`), or set meta.base_learner to the "
           "authors' PSPNet best.pth.")
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Base learner {path} not found. {how}")
    raw = read_weights_file(path, how_to_get=how)
    if isinstance(raw, dict) and raw.get("format") in (FORMAT, EXPORT_FORMAT):
        # a stage-2 file carries, frozen and unchanged, the backbone and base learner it was
        # trained with: reusing them is how an experiment starts from a shipped toy model
        if raw.get("stage") not in ("base", "meta"):
            raise ValueError(f"{path} is a '{raw.get('stage')}' checkpoint; the base learner "
                             "comes from stage 1 ('base') or a stage-2 model ('meta').")
        state = raw["state_dict"]
    elif isinstance(raw, dict) and "state_dict" in raw:
        state = raw["state_dict"]  # the authors' PSPNet best.pth
    else:
        raise ValueError(f"{path} holds no 'state_dict'; it is not a PSPNet base learner.")
    # the same renaming as load_authors_checkpoint: wrappers, BAM's encoder copy, ppm/cls
    expected = model.state_dict()
    renamed = adapt_to_model(state, expected).state
    wanted = {k: v for k, v in expected.items() if is_pspnet_part(k)}
    # the meta learner's keys of a stage-2 file are not wanted: not "unexpected" here
    match = match_state_dict(wanted, {k: v for k, v in renamed.items() if k in wanted})
    missing, wrong = match.missing, [key for key, _, _ in match.mismatched]
    if missing or wrong:
        raise ValueError(
            f"Base learner {path} does not fit MSANet(backbone={model.config.backbone}, "
            f"num_base_classes={model.config.num_base_classes}): {len(missing)} tensors "
            f"missing (e.g. {missing[:2]}), {len(wrong)} with another shape (e.g. {wrong[:2]}).")
    model.load_state_dict(match.loadable, strict=False)
    return f"backbone and base learner from {path}"


def trainable_groups(model: MSANet) -> list[dict[str, Any]]:
    """One SGD group per trainable module, in registration order (BAM's ``get_optim`` order:
    down_query, down_supp, init_merge, ASPP_meta, res1/res2/cls_meta, gram_merge, cls_merge,
    kshot_rw, then MSANet's gam and hyper_final)."""
    groups = []
    for name, module in model.named_children():
        params = [p for p in module.parameters() if p.requires_grad]
        if params:
            groups.append({"params": params, "name": name})
    return groups


def build_meta_stage(
    cfg: TrainConfig, device: torch.device, base_learner: str | Path | None, amp: str = "none"
) -> tuple[StageSpec, Recipe]:
    """The stage-2 spec and recipe from ``cfg.meta``.

    ``base_learner``: file with the stage-1 weights, or None for a random frozen backbone
    (only for tests and ablations).
    """
    m = cfg.meta
    model = MSANet(cfg.model_config())
    note = load_base_learner(model, base_learner) if base_learner else "random frozen backbone"
    model.freeze_pretrained()
    model = model.to(device)

    train_set = episode_dataset(cfg, split="train", image_size=m.image_size,
                                scale=(m.scale_min, m.scale_max),
                                rotate=(m.rotate_min, m.rotate_max))
    val_set = episode_dataset(cfg, split="val", image_size=m.image_size)
    eval_amp = None if amp == "none" else amp

    def step(net: nn.Module, batch: Any) -> StepOutput:
        out = net(batch["query_img"], batch["support_imgs"], batch["support_masks"],
                  y_m=batch["query_mask"], y_b=batch["query_base_label"],
                  cat_idx=batch["class_index"])
        loss = out.main_loss + m.aux_weight1 * out.aux_loss1 + m.aux_weight2 * out.aux_loss2
        return StepOutput(loss, {"main_loss": out.main_loss, "aux_loss1": out.aux_loss1,
                                 "aux_loss2": out.aux_loss2})

    def train_mode(net: nn.Module) -> None:
        net.train()  # MSANet.train() keeps BatchNorm in eval mode when config.fix_bn

    def validate(net: nn.Module, ctx: DistContext) -> dict[str, float]:
        """The test protocol on ``val_episodes`` episodes, shared out over the processes."""
        result = evaluate(net, val_set, episodes=m.val_episodes, seeds=[m.val_seed],
                          device=device, amp=eval_amp, progress=False,
                          num_workers=cfg.runtime.workers, shard=(ctx.rank, ctx.world_size))
        return {"score": result.mean_miou, "fbiou": result.mean_fb_iou,
                "miou_meta": result.mean("miou_meta")}

    spec = StageSpec(
        name="meta", model=model, param_groups=trainable_groups(model), train_set=train_set,
        step=step, validate=validate, train_mode=train_mode, collate=collate_episodes,
        model_config=dict(cfg.model_config().__dict__),
        find_unused_parameters=m.find_unused_parameters,
        frozen_buffers=cfg.model.fix_bn,
        training_copy=prepare_for_training if cfg.runtime.fast_frozen else None,
        notes={"init": note, "train_episodes": len(train_set), "val_images": len(val_set),
               "lists": lists_note(cfg), "base labels": base_labels_note(cfg)})
    recipe = Recipe(epochs=m.epochs, batch_size=m.batch_size, base_lr=m.base_lr,
                    index_split=m.index_split, scale_lr=m.scale_lr, power=m.power,
                    momentum=m.momentum, weight_decay=m.weight_decay,
                    stop_interval=m.stop_interval, half_epoch_val=m.val_half_epoch,
                    samples_per_epoch=m.samples_per_epoch)
    return spec, recipe
