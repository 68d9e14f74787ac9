"""Stage 1: train the PSPNet base learner on the fold's base classes (BAM's ``train_base.py``).

The whole network learns (backbone, PPM, classifier); pixels of the fold's novel classes are
background, so the base learner never sees a novel class as foreground. The optimiser groups are
BAM's ``[encoder, ppm, cls]``; with ``index_split: 0`` (PASCAL) the encoder keeps the base lr and
PPM/classifier get 10x. Validation: base-class mIoU (background excluded) on the val images,
the score that selects ``best.pth``.

Offline (the toy benchmark) the backbone starts from scratch; online, ``base.init: imagenet``
starts it from ImageNet weights (:mod:`msanet_lib.backbones.pretrained`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from msanet_lib.backbones.pretrained import load_imagenet_weights
from msanet_lib.data.datasets import collate_episodes
from msanet_lib.evaluation.metrics import MultiClassIoU
from msanet_lib.evaluation.protocol import rank_batches
from msanet_lib.model.pspnet import PSPNet
from msanet_lib.training.config import TrainConfig
from msanet_lib.training.data import base_class_dataset, base_labels_note
from msanet_lib.training.distributed import DistContext
from msanet_lib.training.engine import Recipe, StageSpec, StepOutput, autocast, parameters_of


def init_backbone(model: PSPNet, init: str) -> str:
    """Initialise the backbone: ``"scratch"``, ``"imagenet"`` or a path to weights.

    Returns a short description for the log. Raises FileNotFoundError/ValueError with the
    path when weights are missing or do not fit.
    """
    if init == "scratch":
        return "random initialisation (from scratch)"
    if init in ("imagenet", "torchvision"):
        # "imagenet": the authors' deep-stem file in <data root>/initmodel/ (as PSPNet/BAM);
        # for resnet_toy, the shipped stage-0 export (the toy world's ImageNet);
        # "torchvision": torchvision's weights (downloaded on request; the stem stays random).
        report = load_imagenet_weights(model.backbone, None if init == "imagenet" else init)
        return (f"ImageNet weights for {model.backbone_name} ({len(report.loaded)} tensors from "
                f"{report.source}, {len(report.missing) + len(report.mismatched)} left as initialised)")
    path = Path(init).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"base.init={init!r}: no such file. Use 'scratch', 'imagenet', "
                                "'torchvision' or a path to backbone weights.")
    report = load_imagenet_weights(model.backbone, path)
    return (f"backbone weights from {path} ({len(report.loaded)} tensors, "
            f"{len(report.missing) + len(report.mismatched)} left as initialised)")


def build_base_stage(cfg: TrainConfig, device: torch.device, amp: str = "none",
                     init: str | None = None) -> tuple[StageSpec, Recipe]:
    """The stage-1 spec (model, data, step, validation) and recipe from ``cfg.base``;
    ``init`` overrides ``cfg.base.init`` (the pipeline resolves ``stage0`` to a file)."""
    b = cfg.base
    model = PSPNet(cfg.model_config()).to(device)
    init_note = init_backbone(model, init or b.init)

    train_set = base_class_dataset(cfg, split="train", image_size=b.image_size,
                                   scale=(b.scale_min, b.scale_max),
                                   rotate=(b.rotate_min, b.rotate_max))
    val_set = base_class_dataset(cfg, split="val", image_size=b.image_size,
                                 max_images=b.max_val_images)
    num_classes = model.num_classes

    groups = [
        {"params": parameters_of(model.encoder_modules()), "name": "encoder"},
        {"params": parameters_of([model.ppm]), "name": "ppm"},
        {"params": parameters_of([model.cls]), "name": "cls"},
    ]

    def step(net: nn.Module, batch: Any) -> StepOutput:
        out = net(batch["image"], batch["label"])
        return StepOutput(out.loss)

    def train_mode(net: nn.Module) -> None:
        net.train()  # BAM trains every BatchNorm in stage 1

    @torch.no_grad()
    def validate(net: nn.Module, ctx: DistContext) -> dict[str, float]:
        """Base-class mIoU; each process scores every world_size-th batch, counts summed."""
        net.eval()
        meter = MultiClassIoU(num_classes)
        batches = rank_batches(range(len(val_set)), b.val_batch_size, ctx.rank, ctx.world_size)
        loader = DataLoader(val_set, batch_sampler=batches, num_workers=cfg.runtime.workers,
                            collate_fn=collate_episodes)
        for batch in loader:
            image, label = batch["image"].to(device), batch["label"].to(device)
            with autocast(device, amp):
                logits = net(image)  # (B, C, S, S)
            meter.update(logits.argmax(1), label)
        meter.all_reduce(device)
        return {"score": meter.miou}

    spec = StageSpec(
        name="base", model=model, param_groups=groups, train_set=train_set, step=step,
        validate=validate, train_mode=train_mode, model_config=cfg.model_config().__dict__,
        collate=collate_episodes, sync_batchnorm=True,
        notes={"init": init_note, "train_images": len(train_set), "val_images": len(val_set),
               "base labels": base_labels_note(cfg)})
    recipe = Recipe(epochs=b.epochs, batch_size=b.batch_size, base_lr=b.base_lr,
                    index_split=b.index_split, scale_lr=b.scale_lr, power=b.power,
                    momentum=b.momentum, weight_decay=b.weight_decay,
                    stop_interval=b.stop_interval, samples_per_epoch=b.samples_per_epoch)
    return spec, recipe

