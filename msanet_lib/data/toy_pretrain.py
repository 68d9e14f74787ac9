"""Stage 0 data: the toy world's "ImageNet", a label-rich task that never shows a toy class.

Offline there are no ImageNet weights, so the toy backbone gets its own generic pretraining
(stage 0) before stage 1, the way the authors start stage 1 from ``resnet50_v2.pth``. Its images
come from the toy generator's *pretraining world* (:func:`msanet_lib.data.toy.generate_chunk`
with ``world="pretrain"``): the same kind of cluttered scenes (1-3 objects, distractor bars and
crescents, occlusion, sensor noise), drawn from their own random streams, whose objects are the
105 shape x pattern x hue combinations that are **not** one of the 20 benchmark classes.

The labels are dense and factorised: every pixel says which silhouette, which surface pattern
and which hue it belongs to (0 = background, 255 = the ignore band on boundaries). So the
backbone learns the visual vocabulary of the toy world (colours, textures, outlines, objects
against clutter) the way ImageNet teaches edges, textures and object parts, but it never learns
that, say, "red striped disc" is a category: the class identities, and every image of the
benchmark, stay unseen. Where the analogy breaks: ImageNet's 1000 classes include PASCAL's
novel categories themselves (cats, dogs, buses); here even the novel classes' attribute
*combinations* are withheld, so the toy is the stricter setting.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from msanet_lib.data.toy import HUES, PATTERNS, SHAPES, generate_split, pretrain_combinations
from msanet_lib.runtime import IGNORE_LABEL

ATTRIBUTES: dict[str, tuple[str, ...]] = {"shape": SHAPES, "pattern": PATTERNS,
                                          "hue": tuple(HUES)}


def attribute_table() -> Tensor:
    """``(256, 3) int64``: label value -> (shape, pattern, hue) target, each ``0`` for
    background, ``1..5`` for an attribute value, ``255`` for the ignore band and unused values."""
    table = torch.full((256, 3), IGNORE_LABEL, dtype=torch.int64)
    table[0] = 0
    combos = torch.tensor(pretrain_combinations(), dtype=torch.int64)
    table[1:1 + len(combos)] = combos + 1
    return table


class AttributeDataset(Dataset):
    """``count`` images of the pretraining world, generated in memory (about 4 ms each).

    Items: ``image`` (3, S, S) float32 normalised as the benchmark's, ``label`` (S, S) int64
    combination labels (map them to attribute targets with :func:`attribute_table`).

    Args:
        split: ``train`` or ``val`` (independent random streams).
        count: number of images.
        transform: ``transform(image, labels (1, H, W), rng) -> (image, labels)``, the
            benchmark's train or test transform.
        seed: generator seed of the images; per-item augmentation uses ``(seed, epoch, index)``.
    """

    def __init__(self, split: str, count: int, transform, seed: int = 0) -> None:  # noqa: ANN001
        if count < 1:
            raise ValueError(f"count must be >= 1 image, got {count}")
        self.images, self.labels = generate_split(seed, split, count, world="pretrain")
        self.transform = transform
        self.split, self.seed, self.epoch = split, int(seed), 0

    def __len__(self) -> int:
        return len(self.images)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __getitem__(self, index: int) -> dict:
        index = range(len(self))[index]
        rng = np.random.default_rng((self.seed, self.epoch, index))
        image, label = self.transform(self.images[index], self.labels[index][None], rng)
        return {"image": image, "label": label[0]}


__all__ = ["ATTRIBUTES", "AttributeDataset", "attribute_table"]
