"""Transforms: geometry keeps labels on the image, padding values, test-time sizes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from msanet_lib.data.transforms import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Crop,
    RandomGaussianBlur,
    RandomHorizontalFlip,
    RandRotate,
    RandScale,
    StretchResize,
    TestResize,
    gaussian_blur,
    hsnet_test_transform,
    nearest_resize,
    rotate_pair,
    test_transform,
    train_transform,
)


def square_scene(h=64, w=80, box=(20, 40, 30, 55)):
    """White square on black: label 1 exactly where the image is bright."""
    y0, y1, x0, x1 = box
    label = np.zeros((h, w), np.int64)
    label[y0:y1, x0:x1] = 1
    image = np.zeros((h, w, 3), np.float32)
    image[y0:y1, x0:x1] = 255.0
    return image, label


def test_geometric_augmentation_keeps_label_on_object():
    image, label = square_scene()
    # The authors' pipeline without blur/normalisation, so brightness tracks the object.
    aug = Compose([RandScale((0.8, 1.25)), RandRotate((-10, 10), padding=(0.0, 0.0, 0.0), p=1.0),
                   RandomHorizontalFlip(p=0.5), Crop(48, padding=(0.0, 0.0, 0.0))])
    for seed in range(8):
        img, lab = aug(image, label, np.random.default_rng(seed))
        assert img.shape == (3, 48, 48) and lab.shape == (1, 48, 48)
        obj, bright = lab[0] == 1, img[0] > 127
        inter = (obj & bright).sum().item()
        assert inter / obj.sum().item() > 0.93 and inter / bright.sum().item() > 0.93


def test_rotation_by_hand_and_padding():
    label = torch.arange(16, dtype=torch.int64).view(1, 4, 4)
    image = torch.zeros(3, 4, 4)
    img, lab = rotate_pair(image, label, 90.0, padding=(1.0, 2.0, 3.0))
    # cv2 convention, centre (w/2, h/2) = (2, 2): out[y, x] = in[x, 4 - y]; row 0 is outside.
    for y in range(1, 4):
        for x in range(4):
            assert lab[0, y, x] == label[0, x, 4 - y]
    assert (lab[0, 0] == 255).all()
    assert torch.allclose(img[:, 0, 1], torch.tensor([1.0, 2.0, 3.0]))
    # Small angles: corners come from outside -> label 255, image = padding (the mean).
    _, lab = rotate_pair(torch.zeros(3, 30, 30), torch.ones(1, 30, 30, dtype=torch.int64), 10.0)
    assert lab[0, 0, 0] == 255 and lab[0, 15, 15] == 1


def test_crop_keeps_most_of_the_object_and_pads():
    label = np.zeros((100, 100), np.int64)
    label[50:80, 10:40] = 1  # one random 60-crop keeps >= 85% of it with p ~ 0.22
    def kept(crop, seed):
        _, lab = crop(torch.zeros(3, 100, 100), torch.as_tensor(label)[None],
                      np.random.default_rng(seed))
        return (lab == 1).sum().item() / (label == 1).sum()
    with_retries = [kept(Crop(60), s) for s in range(20)]
    single_try = [kept(Crop(60, max_retries=0), s) for s in range(20)]
    assert min(with_retries) >= 0.85
    assert min(single_try) < 0.85  # the retries are what keeps the object
    img, lab = Crop(30)(torch.zeros(3, 20, 20), torch.zeros(1, 20, 20, dtype=torch.int64),
                        np.random.default_rng(0))
    assert lab.shape == (1, 30, 30) and (lab[0, :5] == 255).all() and (lab[0, 5:25, 5:25] == 0).all()
    assert torch.allclose(img[:, 0, 0], torch.tensor(IMAGENET_MEAN))


def test_flip_and_blur():
    label = torch.arange(6).view(1, 2, 3)
    img, lab = RandomHorizontalFlip(p=1.0)(torch.zeros(3, 2, 3), label, np.random.default_rng(0))
    assert lab[0, 0].tolist() == [2, 1, 0]
    const = torch.full((3, 9, 9), 77.0)
    assert torch.allclose(gaussian_blur(const, 5, 1.1), const)
    spike = torch.zeros(1, 9, 9)
    spike[0, 4, 4] = 1
    blurred = gaussian_blur(spike, 5, 1.1)
    assert torch.isclose(blurred.sum(), torch.tensor(1.0)) and blurred[0, 4, 4] < 0.2
    assert RandomGaussianBlur(5, p=0.0)(const, label, np.random.default_rng(0))[0] is const


def test_test_resize_sizes_and_padding():
    t = TestResize(473)
    assert t.new_size(375, 500) == (352, 472)
    assert t.new_size(500, 375) == (472, 352)
    assert t.new_size(473, 473) == (472, 472)
    image = np.full((375, 500, 3), 100.0, np.float32)
    label = np.ones((375, 500), np.int64)
    img, lab = test_transform(473)(image, label, np.random.default_rng(0))
    assert img.shape == (3, 473, 473) and lab.shape == (1, 473, 473)
    assert (lab[0, :352, :472] == 1).all() and (lab[0, 352:] == 255).all()
    assert (lab[0, :, 472:] == 255).all()
    # Image padding is 0 BEFORE normalisation, i.e. -mean/std afterwards.
    pad = -torch.tensor(IMAGENET_MEAN) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(img[:, 400, 10], pad) and torch.allclose(img[:, 10, 472], pad)
    inside = (100.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(img[:, 100, 100], inside, atol=1e-5)


def test_hsnet_stretch_resize_by_hand():
    """HSNet: both sides to the size (aspect ratio not kept), labels nearest, no padding."""
    label = torch.tensor([[1, 1, 2, 2],
                          [3, 3, 255, 0]])  # 2 x 4
    # nearest takes source row floor(i * 2 / 4) and column floor(j * 4 / 4) for output (i, j)
    assert nearest_resize(label, 4).tolist() == [[1, 1, 2, 2],
                                                [1, 1, 2, 2],
                                                [3, 3, 255, 0],
                                                [3, 3, 255, 0]]
    tall = torch.arange(6)[:, None].repeat(1, 3)  # 6 x 3, row i holds i
    assert nearest_resize(tall, 3).tolist() == [[0, 0, 0], [2, 2, 2], [4, 4, 4]]
    assert nearest_resize(label[None], 4).shape == (1, 4, 4)  # (L, H, W) kept as a stack
    image = np.full((2, 4, 3), 100.0, np.float32)
    img, lab = hsnet_test_transform(4)(image, label.numpy(), np.random.default_rng(0))
    assert img.shape == (3, 4, 4) and lab.shape == (1, 4, 4)
    assert torch.equal(lab[0], nearest_resize(label, 4))
    # every pixel is image (a constant stays constant), unlike the authors' padded canvas
    inside = (100.0 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    assert torch.allclose(img, inside[:, None, None].expand(3, 4, 4), atol=1e-5)
    _, authors = test_transform(16)(np.full((8, 16, 3), 100.0, np.float32),
                                    np.ones((8, 16), np.int64), None)
    assert (authors[0, 8:] == 255).all()  # the authors keep the ratio and pad with 255
    _, stretched = StretchResize(16)(torch.full((3, 8, 16), 100.0), torch.ones(1, 8, 16).long())
    assert (stretched == 1).all()
    # the image as HSNet's torchvision Resize on a PIL image (PIL's bilinear filter, which
    # widens when shrinking): within PIL's rounding to uint8, shrinking and enlarging
    from PIL import Image

    rng = np.random.default_rng(0)
    for h, w, size in ((8, 8, 4), (5, 7, 4), (37, 23, 16), (6, 9, 20)):
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        pil = np.asarray(Image.fromarray(pixels).resize((size, size), Image.BILINEAR))
        ours, _ = StretchResize(size)(torch.from_numpy(pixels).permute(2, 0, 1).float(),
                                      torch.zeros(1, h, w, dtype=torch.long))
        assert np.abs(ours.permute(1, 2, 0).numpy() - pil).max() <= 1.0, (h, w, size)
    with pytest.raises(ValueError, match="must be >= 1"):
        StretchResize(0)


def test_train_transform_is_deterministic_given_rng_and_joint():
    image, label = square_scene()
    t = train_transform(48, (0.9, 1.1))
    labels = np.stack([label, label * 3])
    a = t(image, labels, np.random.default_rng(5))
    b = t(image, labels, np.random.default_rng(5))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    lab = a[1]
    assert torch.equal(lab[1] == 3, lab[0] == 1)  # both maps moved together
    with pytest.raises(ValueError, match="sizes differ"):
        t(image, label[:10], np.random.default_rng(0))
