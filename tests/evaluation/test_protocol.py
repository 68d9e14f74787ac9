"""The test protocol against a naive episode-by-episode reference, with small fakes."""

from __future__ import annotations

import json
import math
import random

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from msanet_lib.evaluation.metrics import FewShotIoU, intersection_and_union
from msanet_lib.evaluation.protocol import (
    SEEDS,
    EvalResult,
    collate_for_eval,
    evaluate,
    resize_to_sides,
)
from msanet_lib.runtime import seed_all

SIZE = 16  # network input side
RAW_SIZES = [(10, 13), (16, 9), (7, 7), (20, 11), (1, 3)]


class FakeEpisodes(torch.utils.data.Dataset):
    """Random episodes; the class and the content depend on the global seeds."""

    novel_classes = [1, 2, 3]
    fold, shots, benchmark = 0, 1, "fake"

    def __init__(self, classes_used: int = 3, perfect: bool = False, raw: bool = True) -> None:
        self.classes_used = classes_used
        self.perfect = perfect
        self.raw = raw
        self.visited: list[int] = []

    def __len__(self) -> int:
        return len(RAW_SIZES)

    def __getitem__(self, index: int) -> dict:
        self.visited.append(index)
        h0, w0 = (SIZE, SIZE) if self.perfect else RAW_SIZES[index]
        raw = (torch.rand(h0, w0) > 0.5).long()
        raw[0, : w0 // 2] = 255
        img = torch.randn(3, SIZE, SIZE)
        if self.perfect:  # channel 0 encodes the label, so the fake model is exact
            img[0] = (raw == 1).float() * 2 - 1
        item = {
            "query_img": img,
            "query_mask": torch.zeros(SIZE, SIZE, dtype=torch.long),
            "support_imgs": torch.randn(1, 3, SIZE, SIZE),
            "support_masks": torch.ones(1, SIZE, SIZE, dtype=torch.long),
            "query_base_label": torch.randint(0, 3, (SIZE, SIZE)),
            "class_index": random.randrange(self.classes_used),
            "class_id": 0,
        }
        if self.raw:
            item["query_raw_label"] = raw
        return item


class Recorder(list):
    """A list that the evaluation copy of a model shares with the original (not deep-copied)."""

    def __deepcopy__(self, memo: dict) -> Recorder:
        return self


class FakeModel(nn.Module):
    """final_out = [-x0, x0], meta_out = [0.3 - x1, x1], base_out = a 1x1 conv of x."""

    def __init__(self) -> None:
        super().__init__()
        self.base = nn.Conv2d(3, 3, 1)
        self.seen: list[tuple[torch.dtype, bool]] = Recorder()

    def forward(self, x: Tensor, s_x: Tensor, s_y: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        base_out = self.base(x)
        self.seen.append((base_out.dtype, x.is_contiguous(memory_format=torch.channels_last)))
        final = torch.stack((-x[:, 0], x[:, 0]), 1)
        meta = torch.stack((0.3 - x[:, 1], x[:, 1]), 1)
        return final, meta, base_out


def naive_protocol(model: nn.Module, dataset: FakeEpisodes, episodes: int, seed: int) -> FewShotIoU:
    """One episode at a time, F.interpolate per episode, canvas built by hand."""
    seed_all(seed)
    meter = FewShotIoU(dataset.novel_classes)
    with torch.no_grad():
        for i in range(episodes):
            item = dataset[i % len(dataset)]
            final = model(item["query_img"][None], item["support_imgs"][None], None)[0]
            raw = item["query_raw_label"]
            side = max(raw.shape)
            target = torch.full((1, side, side), 255, dtype=torch.long)
            target[0, : raw.shape[0], : raw.shape[1]] = raw
            up = F.interpolate(final, size=(side, side), mode="bilinear", align_corners=True)
            inter, union, _ = intersection_and_union(up.argmax(1), target, 2)
            meter.add_counts(inter, union, torch.tensor([item["class_index"]]))
    return meter


def test_resize_to_sides_matches_interpolate_per_episode() -> None:
    torch.manual_seed(0)
    logits = torch.randn(4, 3, 12, 17)
    sides = torch.tensor([25, 1, 12, 40])
    out = resize_to_sides(logits, sides, 40)
    assert out.shape == (4, 3, 40, 40)
    for b, side in enumerate(sides.tolist()):
        ref = F.interpolate(logits[b : b + 1], (side, side), mode="bilinear", align_corners=True)
        torch.testing.assert_close(out[b : b + 1, :, :side, :side], ref, atol=1e-5, rtol=1e-5)


def test_collate_puts_raw_labels_top_left_on_an_ignore_canvas() -> None:
    a = torch.tensor([[1, 0, 1]])
    b = torch.tensor([[0], [1]])
    batch = collate_for_eval(
        [{"query_raw_label": a, "class_index": 2}, {"query_raw_label": b, "class_index": 0}]
    )
    assert batch["raw_side"].tolist() == [3, 2]
    assert batch["raw_target"].tolist() == [
        [[1, 0, 1], [255, 255, 255], [255, 255, 255]],
        [[0, 255, 255], [1, 255, 255], [255, 255, 255]],
    ]
    assert batch["class_index"].tolist() == [2, 0]


@pytest.mark.parametrize("batch_size", [1, 3])
def test_evaluate_matches_naive_reference(batch_size: int) -> None:
    model, episodes = FakeModel(), 12
    result = evaluate(
        model, FakeEpisodes(), episodes, seeds=[7], batch_size=batch_size, progress=False
    )
    ref = naive_protocol(model, FakeEpisodes(), episodes, seed=7)
    seed = result.seeds[0]
    assert seed.episodes == episodes
    assert seed.class_iou == pytest.approx(ref.class_iou, nan_ok=True)
    assert seed.miou == pytest.approx(ref.miou)
    assert seed.fb_iou == pytest.approx(ref.fb_iou)
    assert seed.piou == pytest.approx(ref.piou)
    assert seed.miou_base is not None and 0 <= seed.miou_base <= 1


def test_queries_walk_the_list_in_order_and_cycle() -> None:
    dataset = FakeEpisodes()
    evaluate(FakeModel(), dataset, 12, seeds=[1], batch_size=4, progress=False)
    assert dataset.visited == [i % 5 for i in range(12)]


def test_same_seed_same_result_other_seed_other_episodes() -> None:
    def run(seeds: list[int]) -> EvalResult:
        return evaluate(FakeModel(), FakeEpisodes(), 10, seeds=seeds, progress=False)

    first, again = run([3]), run([3])
    assert first.seeds[0].class_iou == again.seeds[0].class_iou
    other = run([4])
    assert other.seeds[0].class_iou != first.seeds[0].class_iou


def test_perfect_predictions_score_one() -> None:
    result = evaluate(FakeModel(), FakeEpisodes(perfect=True), 6, seeds=[0], progress=False)
    assert result.seeds[0].miou == pytest.approx(1.0)
    assert result.seeds[0].fb_iou == pytest.approx(1.0)


def test_class_that_never_appears_is_reported_and_counted_as_zero() -> None:
    with pytest.warns(UserWarning, match="no episode"):
        result = evaluate(FakeModel(), FakeEpisodes(classes_used=2), 10, seeds=[0],
                          progress=False)
    seed = result.seeds[0]
    assert seed.missing_classes == [3]
    assert math.isnan(seed.class_iou[2])
    assert seed.miou == pytest.approx(sum(seed.class_iou[:2]) / 3)
    assert "counted as 0" in result.to_markdown()


def test_mean_and_best_over_seeds_and_reports() -> None:
    result = evaluate(FakeModel(), FakeEpisodes(), 8, seeds=[1, 2, 3], progress=False)
    mious = [s.miou for s in result.seeds]
    assert result.mean_miou == pytest.approx(sum(mious) / 3)
    assert result.best_miou == max(mious)
    table = result.to_markdown()
    assert "| **Mean** |" in table and "| 2 |" in table and "class 3" in table
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["summary"]["mean_miou"] == pytest.approx(result.mean_miou)
    assert [s["seed"] for s in data["seeds"]] == [1, 2, 3]
    assert isinstance(result, EvalResult) and result.fold == 0 and result.shots == 1


def test_bf16_autocast_and_channels_last_reach_the_model() -> None:
    model = FakeModel()
    result = evaluate(
        model, FakeEpisodes(), 4, seeds=[0], amp="bf16", channels_last=True, progress=False
    )
    assert model.seen and all(dtype == torch.bfloat16 and cl for dtype, cl in model.seen)
    assert 0 <= result.seeds[0].miou <= 1


def test_default_seeds_are_the_authors() -> None:
    assert SEEDS == (510, 365, 382, 322, 988)


def test_clear_errors() -> None:
    with pytest.raises(ValueError, match="query_raw_label"):
        evaluate(FakeModel(), FakeEpisodes(raw=False), 2, seeds=[0], progress=False)
    with pytest.raises(ValueError, match="amp"):
        evaluate(FakeModel(), FakeEpisodes(), 2, seeds=[0], amp="int8", progress=False)
    with pytest.raises(ValueError, match="fp16"):
        evaluate(FakeModel(), FakeEpisodes(), 2, seeds=[0], amp="fp16", device="cpu",
                 progress=False)
    dataset = FakeEpisodes()
    with pytest.raises(ValueError, match="class_ids"):
        evaluate(FakeModel(), torch.utils.data.Subset(dataset, [0, 1]), 2, seeds=[0],
                 progress=False)


class SeededEpisodes(FakeEpisodes):
    """Like FewShotDataset: per-episode generator from (seed, index), length = episodes."""

    def __init__(self) -> None:
        super().__init__()
        self.seed, self.episodes = 0, len(RAW_SIZES)

    def __len__(self) -> int:
        return self.episodes

    def __getitem__(self, index: int) -> dict:
        self.visited.append(index)
        rng = np.random.default_rng((self.seed, index))
        h0, w0 = RAW_SIZES[index % len(RAW_SIZES)]
        raw = torch.from_numpy((rng.random((h0, w0)) > 0.5).astype(np.int64))
        item = super().__getitem__(index % len(RAW_SIZES))
        item.update(query_raw_label=raw, class_index=int(rng.integers(3)),
                    query_img=torch.from_numpy(rng.standard_normal((3, SIZE, SIZE))).float())
        return item


def test_datasets_with_their_own_seed_get_it_and_it_is_restored() -> None:
    dataset = SeededEpisodes()
    first = evaluate(FakeModel(), dataset, 12, seeds=[5, 6], progress=False)
    assert (dataset.seed, dataset.episodes) == (0, len(RAW_SIZES))
    # Indices run past the list (new episodes on the second pass), once per seed.
    assert dataset.visited[:24:2] == list(range(12))  # (the parent class logs again)
    again = evaluate(FakeModel(), SeededEpisodes(), 12, seeds=[5], progress=False)
    assert again.seeds[0].class_iou == first.seeds[0].class_iou
    assert first.seeds[0].class_iou != first.seeds[1].class_iou


def test_training_mode_is_restored() -> None:
    model = FakeModel().train()
    evaluate(model, FakeEpisodes(), 2, seeds=[0], progress=False)
    assert model.training


def test_evaluation_runs_a_prepared_copy_and_leaves_the_model_as_it_was() -> None:
    model = FakeModel().train()
    model.base = nn.Sequential(nn.Conv2d(3, 3, 1), nn.BatchNorm2d(3))
    model.base[1].running_mean.fill_(0.2)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    folded = evaluate(model, FakeEpisodes(), 6, seeds=[0], progress=False)
    assert model.seen and all(cl for _, cl in model.seen)  # channels_last on CPU by default
    kept = evaluate(model, FakeEpisodes(), 6, seeds=[0], fold_bn=False, channels_last=False,
                    progress=False)
    assert not model.seen[-1][1]
    assert folded.info["fold_bn"] and not kept.info["fold_bn"]
    assert folded.seeds[0].miou_base == kept.seeds[0].miou_base
    assert model.training and isinstance(model.base[1], nn.BatchNorm2d)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in before.items())
    assert model.base[0].weight.is_contiguous()
