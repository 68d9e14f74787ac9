"""Metrics against hand-computed values and a naive per-pixel reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from msanet_lib.evaluation.metrics import FewShotIoU, MultiClassIoU, intersection_and_union

# Three binary episodes of 2x3 pixels; 255 marks ignored pixels.
PRED = torch.tensor(
    [
        [[1, 1, 0], [0, 0, 0]],
        [[0, 0, 0], [0, 1, 1]],
        [[1, 1, 1], [1, 1, 1]],
    ]
)
TARGET = torch.tensor(
    [
        [[1, 0, 0], [1, 255, 0]],
        [[0, 0, 0], [0, 1, 0]],
        [[1, 1, 1], [255, 255, 255]],
    ]
)
# Worked by hand (bg, fg) per episode, ignoring the 255 pixels:
#   A: fg I=1 (top-left), |pred fg|=2, |target fg|=2 -> U=3; bg I=2, |pred bg|=3, |t bg|=3 -> U=4
#   B: fg I=1, U=2; bg I=4, |pred bg|=4, |t bg|=5 -> U=5
#   C: fg I=3, U=3; bg I=0, U=0
HAND_INTER = [[2, 1], [4, 1], [0, 3]]
HAND_UNION = [[4, 3], [5, 2], [0, 3]]
HAND_TARGET = [[3, 2], [5, 1], [0, 3]]


def naive_counts(pred: np.ndarray, target: np.ndarray, k: int) -> tuple[np.ndarray, ...]:
    """Pixel-by-pixel reference for one episode."""
    inter = np.zeros(k, np.int64)
    p_area = np.zeros(k, np.int64)
    t_area = np.zeros(k, np.int64)
    for p, t in zip(pred.ravel(), target.ravel()):
        if t == 255:
            continue
        p_area[p] += 1
        t_area[t] += 1
        inter[t] += int(p == t)
    return inter, p_area + t_area - inter, t_area


def test_intersection_and_union_hand_values() -> None:
    inter, union, area = intersection_and_union(PRED, TARGET, 2)
    assert inter.tolist() == HAND_INTER
    assert union.tolist() == HAND_UNION
    assert area.tolist() == HAND_TARGET
    assert inter.dtype == torch.int64


def test_intersection_and_union_matches_naive_loop() -> None:
    g = torch.Generator().manual_seed(0)
    pred = torch.randint(0, 4, (5, 7, 9), generator=g)
    target = torch.randint(0, 4, (5, 7, 9), generator=g)
    target[torch.rand(5, 7, 9, generator=g) < 0.2] = 255
    inter, union, area = intersection_and_union(pred, target, 4)
    for b in range(5):
        ref = naive_counts(pred[b].numpy(), target[b].numpy(), 4)
        assert inter[b].tolist() == ref[0].tolist()
        assert union[b].tolist() == ref[1].tolist()
        assert area[b].tolist() == ref[2].tolist()


def test_predictions_on_ignored_pixels_do_not_count() -> None:
    target = TARGET.clone()
    pred = PRED.clone()
    pred[target == 255] = 1 - pred[target == 255]  # flip only the ignored pixels
    assert intersection_and_union(pred, target, 2)[1].tolist() == HAND_UNION


def test_few_shot_iou_hand_values_and_missing_class() -> None:
    meter = FewShotIoU(class_ids=[1, 2, 3])
    meter.update(PRED, TARGET, torch.tensor([0, 0, 1]))  # class 3 never appears
    # class 1: (1+1)/(3+2) = 0.4; class 2: 3/3 = 1; class 3: undefined, 0 in the authors' mean.
    assert meter.class_iou[:2] == pytest.approx([0.4, 1.0])
    assert math.isnan(meter.class_iou[2])
    assert meter.missing_classes == [3]
    assert meter.miou == pytest.approx(1.4 / 3)
    assert meter.miou_present == pytest.approx(0.7)
    # bg: 6/9, fg: 5/8
    assert meter.piou == pytest.approx(5 / 8)
    assert meter.fb_iou == pytest.approx((6 / 9 + 5 / 8) / 2)
    assert meter.episodes == 3


def test_fb_iou_without_any_foreground_averages_in_a_zero() -> None:
    meter = FewShotIoU(class_ids=[1])
    empty = torch.zeros(1, 2, 2, dtype=torch.long)
    meter.update(empty, empty, torch.tensor([0]))  # no foreground predicted or labelled
    assert meter.fb_iou == pytest.approx(0.5)  # (bg 1 + fg 0) / 2, as the authors' test.py
    assert meter.miou == 0.0 and math.isnan(meter.miou_present)


def test_few_shot_iou_is_independent_of_batching() -> None:
    whole = FewShotIoU(class_ids=[1, 2, 3])
    whole.update(PRED, TARGET, torch.tensor([0, 2, 1]))
    split = FewShotIoU(class_ids=[1, 2, 3])
    split.update(PRED[:1], TARGET[:1], torch.tensor([0]))
    split.update(PRED[1:], TARGET[1:], torch.tensor([2, 1]))
    assert whole.class_iou == split.class_iou
    assert whole.fb_iou == split.fb_iou


def test_accumulate_then_divide_is_not_the_episode_mean() -> None:
    meter = FewShotIoU(class_ids=[7])
    meter.update(PRED[:2], TARGET[:2], torch.tensor([0, 0]))
    per_episode = [1 / 3, 1 / 2]
    assert meter.miou == pytest.approx(2 / 5)
    assert meter.miou != pytest.approx(sum(per_episode) / 2)


def test_multiclass_iou_skips_background_and_classes_without_ground_truth() -> None:
    pred = torch.tensor([[[0, 1, 1, 2]]])
    target = torch.tensor([[[0, 1, 0, 255]]])
    meter = MultiClassIoU(num_classes=3)
    meter.update(pred, target)
    # class 1: I=1, U=2; class 2: no ground truth (its prediction sits on an ignored pixel).
    assert meter.class_iou[0] == pytest.approx(0.5)
    assert math.isnan(meter.class_iou[1])
    assert meter.miou == pytest.approx(0.5)
    with_bg = MultiClassIoU(num_classes=3, include_background=True)
    with_bg.update(pred, target)
    # background: I=1 (pixel 0), U=2 (pixel 2 is background predicted as 1)
    assert len(with_bg.class_iou) == 3 and with_bg.class_iou[0] == pytest.approx(0.5)
    assert with_bg.miou == pytest.approx(0.5)


@pytest.mark.parametrize(
    ("pred", "target", "message"),
    [
        (torch.zeros(1, 2, 2), torch.zeros(1, 2, 3), "pred and target"),
        (torch.zeros(1, 2, 2), torch.full((1, 2, 2), 3), "outside 0..1"),
        (torch.full((1, 2, 2), 2), torch.zeros(1, 2, 2), "pred holds"),
    ],
)
def test_bad_inputs_raise_clear_errors(pred, target, message) -> None:
    with pytest.raises(ValueError, match=message):
        intersection_and_union(pred, target, 2)


def test_class_index_out_of_range_is_rejected() -> None:
    meter = FewShotIoU(class_ids=[1, 2])
    with pytest.raises(ValueError, match="class_index"):
        meter.update(PRED, TARGET, torch.tensor([0, 1, 2]))


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_gpu_matches_cpu() -> None:
    cpu = intersection_and_union(PRED, TARGET, 2)
    gpu = intersection_and_union(PRED.to("cuda"), TARGET.to("cuda"), 2)
    for a, b in zip(cpu, gpu):
        assert a.tolist() == b.cpu().tolist()
