"""Stage 0: the toy world's ImageNet pretraining of the backbone (no benchmark class is seen).

The authors start stage 1 from ImageNet weights (``initmodel/resnet50_v2.pth``). Offline there
are none, so the toy backbone first learns dense shape / pattern / hue labels of generated
scenes whose objects are never one of the 20 toy classes (:mod:`msanet_lib.data.toy_pretrain`,
:class:`~msanet_lib.model.attribute_net.AttributeNet`). It is shared by all four folds.
Its ``export.pth`` holds ``layer0..4`` under the authors' names, so stage 1 loads it with the
same code as an ImageNet file (``base.init``); the shipped copy is
``checkpoints/toy/stage0/resnet_toy.pth``.

Validation: the mean over the three attributes of their foreground mIoU on ``val_images``
generated validation scenes (the score that selects ``best.pth``).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from msanet_lib.data.datasets import collate_episodes
from msanet_lib.data.toy_pretrain import ATTRIBUTES, AttributeDataset, attribute_table
from msanet_lib.data.transforms import test_transform, train_transform
from msanet_lib.evaluation.metrics import MultiClassIoU
from msanet_lib.evaluation.protocol import rank_batches
from msanet_lib.model.attribute_net import AttributeNet
from msanet_lib.training.config import TrainConfig
from msanet_lib.training.distributed import DistContext
from msanet_lib.training.engine import Recipe, StageSpec, StepOutput, autocast, parameters_of


def build_pretrain_stage(cfg: TrainConfig, device: torch.device,
                         amp: str = "none") -> tuple[StageSpec, Recipe]:
    """The stage-0 spec (model, generated data, step, validation) and recipe from
    ``cfg.pretrain``."""
    p = cfg.pretrain
    num_values = tuple(len(v) + 1 for v in ATTRIBUTES.values())
    model = AttributeNet(cfg.model.backbone, num_values, hidden=p.head_hidden).to(device)
    table = attribute_table().to(device)
    train_set = AttributeDataset(
        "train", p.train_images, seed=p.data_seed,
        transform=train_transform(p.image_size, (p.scale_min, p.scale_max),
                                  (p.rotate_min, p.rotate_max)))
    val_set = AttributeDataset("val", p.val_images, seed=p.data_seed,
                               transform=test_transform(p.image_size))

    def targets(label: torch.Tensor) -> torch.Tensor:
        """(B, H, W) combination labels -> (B, 3, H, W) shape/pattern/hue targets."""
        return table[label.long()].permute(0, 3, 1, 2)

    def step(net: nn.Module, batch: Any) -> StepOutput:
        return StepOutput(AttributeNet.loss(net(batch["image"]), targets(batch["label"]),
                                            p.background_weight))

    @torch.no_grad()
    def validate(net: nn.Module, ctx: DistContext) -> dict[str, float]:
        """Mean attribute mIoU; each process scores every world_size-th batch, counts summed."""
        net.eval()
        meters = [MultiClassIoU(v) for v in num_values]
        batches = rank_batches(range(len(val_set)), 32, ctx.rank, ctx.world_size)
        loader = DataLoader(val_set, batch_sampler=batches, num_workers=cfg.runtime.workers,
                            collate_fn=collate_episodes)
        for batch in loader:
            image = batch["image"].to(device)
            with autocast(device, amp):
                logits = net(image)
            target = targets(batch["label"].to(device))
            for a, (meter, lg) in enumerate(zip(meters, logits)):
                meter.update(lg.argmax(1), target[:, a])
        for meter in meters:
            meter.all_reduce(device)
        scores = {f"miou_{name}": m.miou for name, m in zip(ATTRIBUTES, meters)}
        return {"score": sum(scores.values()) / len(scores), **scores}

    spec = StageSpec(
        name="pretrain", model=model,
        param_groups=[{"params": parameters_of(model.encoder_modules()), "name": "encoder"},
                      {"params": parameters_of([model.head]), "name": "head"}],
        train_set=train_set, step=step, validate=validate, train_mode=lambda net: net.train(),
        model_config={"backbone": cfg.model.backbone, "num_values": list(num_values),
                      "hidden": p.head_hidden},
        collate=collate_episodes, sync_batchnorm=True,
        notes={"init": "random initialisation (from scratch)",
               "train_images": len(train_set), "val_images": len(val_set)})
    # index_split = number of groups: no group gets the 10x multiplier.
    recipe = Recipe(epochs=p.epochs, batch_size=p.batch_size, base_lr=p.base_lr, index_split=2,
                    scale_lr=1.0, power=p.power, momentum=p.momentum,
                    weight_decay=p.weight_decay, stop_interval=p.epochs,
                    samples_per_epoch=p.samples_per_epoch)
    return spec, recipe


__all__ = ["build_pretrain_stage"]
