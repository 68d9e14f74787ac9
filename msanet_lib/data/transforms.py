"""Joint image + label transforms (training augmentation and the test-time resize).

Same steps and parameters as the authors' ``util/transform.py`` / ``transform_tri.py``
(msanet-spec §3, §4), written with torch instead of OpenCV:

- training: RandScale -> RandRotate -> RandomGaussianBlur -> RandomHorizontalFlip ->
  Crop('rand') -> Normalize (``ToTensor`` happens first here; the result is the same);
- test: :class:`TestResize` (long side to ``size`` floored to a multiple of 8, top-left in a
  ``size x size`` canvas) -> Normalize;
- HSNet's test (``msanet-eval --protocol hsnet``): :class:`StretchResize` (both sides to
  ``size``, aspect ratio not kept) -> Normalize.

A transform is called as ``transform(image, labels, rng)``:

- ``image``: ``(H, W, 3)`` float array or ``(3, H, W)`` float tensor, RGB in 0..255;
- ``labels``: ``(L, H, W)`` integer array/tensor, or a sequence of ``(H, W)`` maps. All L maps
  (query: binary label and base label) get the same geometric transform; the crop keeps
  pixels of ``labels[0] == 1`` in view (the authors' rule);
- ``rng``: a :class:`numpy.random.Generator`. All randomness comes from it, so an episode is
  reproducible from its seed whatever process runs it (the authors use the global
  ``random`` module, seeded per DataLoader worker).

It returns ``(image (3, S, S) float32 normalised, labels (L, S, S) int64)``. Geometric warps
use ``grid_sample``/``interpolate`` on the tensors' own device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from msanet_lib.data.splits import IGNORE_LABEL

# ImageNet statistics on the 0..255 scale (the authors multiply [0.485, ...] by 255).
IMAGENET_MEAN: tuple[float, float, float] = (0.485 * 255, 0.456 * 255, 0.406 * 255)
IMAGENET_STD: tuple[float, float, float] = (0.229 * 255, 0.224 * 255, 0.225 * 255)

Labels = Tensor  # (L, H, W) int64


def as_tensors(image: np.ndarray | Tensor, labels: np.ndarray | Tensor | Sequence
               ) -> tuple[Tensor, Labels]:
    """``(3, H, W) float32`` image and ``(L, H, W) int64`` labels from arrays or tensors."""
    img = torch.as_tensor(np.ascontiguousarray(image) if isinstance(image, np.ndarray) else image)
    if img.ndim != 3:
        raise ValueError(f"image must be (H, W, 3) or (3, H, W), got shape {tuple(img.shape)}.")
    if img.shape[-1] == 3 and img.shape[0] != 3:
        img = img.permute(2, 0, 1)
    img = img.float().contiguous()
    if isinstance(labels, (list, tuple)):
        labels = torch.stack([torch.as_tensor(np.asarray(lbl)) for lbl in labels])
    lab = torch.as_tensor(np.ascontiguousarray(labels) if isinstance(labels, np.ndarray)
                          else labels)
    if lab.ndim == 2:
        lab = lab[None]
    lab = lab.long()
    if lab.shape[-2:] != img.shape[-2:]:
        raise ValueError(f"image {tuple(img.shape[-2:])} and label {tuple(lab.shape[-2:])} "
                         "sizes differ.")
    return img, lab


def resize_pair(image: Tensor, labels: Labels, height: int, width: int) -> tuple[Tensor, Labels]:
    """Bilinear image (as cv2 ``INTER_LINEAR``: half-pixel centres, no antialias) and
    nearest labels (as cv2 ``INTER_NEAREST``) to ``(height, width)``."""
    img = F.interpolate(image[None], size=(height, width), mode="bilinear",
                        align_corners=False)[0]
    lab = F.interpolate(labels[None].float(), size=(height, width), mode="nearest")[0].long()
    return img, lab


class Compose:
    """Apply transforms in order, each as ``t(image, labels, rng)``."""

    def __init__(self, transforms: Sequence):
        self.transforms = list(transforms)

    def __call__(self, image, labels, rng: np.random.Generator) -> tuple[Tensor, Labels]:
        image, labels = as_tensors(image, labels)
        for t in self.transforms:
            image, labels = t(image, labels, rng)
        return image, labels

    def __repr__(self) -> str:
        return "Compose(" + ", ".join(repr(t) for t in self.transforms) + ")"


class RandScale:
    """Resize by a factor drawn uniformly from ``scale`` (same factor on both axes)."""

    def __init__(self, scale: tuple[float, float]):
        if not (len(scale) == 2 and 0 < scale[0] <= scale[1]):
            raise ValueError(f"scale={scale!r} must be (min, max) with 0 < min <= max.")
        self.scale = (float(scale[0]), float(scale[1]))

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator):
        s = rng.uniform(*self.scale)
        h, w = labels.shape[-2:]
        # cv2.resize(fx, fy) rounds the output size.
        return resize_pair(image, labels, max(1, round(h * s)), max(1, round(w * s)))

    def __repr__(self) -> str:
        return f"RandScale({self.scale})"


class RandRotate:
    """With probability ``p``, rotate by an angle from ``rotate`` (degrees, counter-clockwise
    as ``cv2.getRotationMatrix2D``) about the image centre ``(w/2, h/2)``.

    Pixels coming from outside the image get ``padding`` (the image mean) and label 255.
    """

    def __init__(self, rotate: tuple[float, float], padding: Sequence[float] = IMAGENET_MEAN,
                 ignore_label: int = IGNORE_LABEL, p: float = 0.5):
        if not (len(rotate) == 2 and rotate[0] <= rotate[1]):
            raise ValueError(f"rotate={rotate!r} must be (min, max) with min <= max.")
        self.rotate, self.padding, self.ignore_label, self.p = rotate, padding, ignore_label, p

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator):
        if rng.random() >= self.p:
            return image, labels
        angle = rng.uniform(*self.rotate)
        return rotate_pair(image, labels, angle, self.padding, self.ignore_label)

    def __repr__(self) -> str:
        return f"RandRotate({self.rotate}, p={self.p})"


def rotate_pair(image: Tensor, labels: Labels, angle: float,
                padding: Sequence[float] = IMAGENET_MEAN,
                ignore_label: int = IGNORE_LABEL) -> tuple[Tensor, Labels]:
    """Rotate image (bilinear) and labels (nearest) by ``angle`` degrees counter-clockwise
    about ``(w/2, h/2)``, as ``cv2.warpAffine(getRotationMatrix2D(...))`` with constant
    borders: ``padding`` for the image, ``ignore_label`` for the labels."""
    h, w = labels.shape[-2:]
    dev = image.device
    a, b = math.cos(math.radians(angle)), math.sin(math.radians(angle))
    cx, cy = w / 2, h / 2
    ys, xs = torch.meshgrid(torch.arange(h, device=dev, dtype=torch.float32),
                            torch.arange(w, device=dev, dtype=torch.float32), indexing="ij")
    # Output pixel (x, y) samples the source at the inverse rotation of (x - c).
    src_x = a * (xs - cx) - b * (ys - cy) + cx
    src_y = b * (xs - cx) + a * (ys - cy) + cy
    grid = torch.stack([src_x / max(w - 1, 1) * 2 - 1, src_y / max(h - 1, 1) * 2 - 1], -1)[None]
    pad = torch.tensor(padding, dtype=image.dtype, device=dev)[:, None, None]
    # grid_sample pads with zeros: shift the values so that zero means the wanted padding.
    img = F.grid_sample((image - pad)[None], grid, mode="bilinear", padding_mode="zeros",
                        align_corners=True)[0] + pad
    lab = F.grid_sample((labels.float() - ignore_label)[None], grid, mode="nearest",
                        padding_mode="zeros", align_corners=True)[0]
    return img, (lab + ignore_label).round().long()


class RandomGaussianBlur:
    """With probability ``p``, blur the image with a ``kernel x kernel`` Gaussian whose sigma
    is cv2's default for that size (0.3 * ((k - 1) / 2 - 1) + 0.8 = 1.1 for k = 5) and
    reflect-101 borders. Labels are unchanged."""

    def __init__(self, kernel: int = 5, p: float = 0.5):
        if kernel < 1 or kernel % 2 == 0:
            raise ValueError(f"kernel={kernel} must be a positive odd number.")
        self.kernel, self.p = kernel, p
        self.sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator):
        if rng.random() >= self.p:
            return image, labels
        return gaussian_blur(image, self.kernel, self.sigma), labels

    def __repr__(self) -> str:
        return f"RandomGaussianBlur(kernel={self.kernel}, p={self.p})"


def gaussian_blur(image: Tensor, kernel: int, sigma: float) -> Tensor:
    """Separable Gaussian blur of a ``(C, H, W)`` image with reflect-101 borders."""
    r = kernel // 2
    x = torch.arange(-r, r + 1, dtype=image.dtype, device=image.device)
    k1 = torch.exp(-(x**2) / (2 * sigma**2))
    k1 = k1 / k1.sum()
    c = image.shape[0]
    mode = "reflect" if min(image.shape[-2:]) > r else "replicate"
    out = F.pad(image[None], (r, r, r, r), mode=mode)
    out = F.conv2d(out, k1.view(1, 1, 1, -1).expand(c, 1, 1, kernel), groups=c)
    out = F.conv2d(out, k1.view(1, 1, -1, 1).expand(c, 1, kernel, 1), groups=c)
    return out[0]


class RandomHorizontalFlip:
    """With probability ``p``, mirror image and labels left-right."""

    def __init__(self, p: float = 0.5):
        self.p = p

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator):
        if rng.random() >= self.p:
            return image, labels
        return image.flip(-1), labels.flip(-1)

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class Crop:
    """Crop ``size x size``, padding first (centred) if the image is smaller.

    Padding: ``padding`` (the mean) for the image, ``ignore_label`` for the labels. With
    ``crop_type="rand"`` the offset is random and is redrawn (at most ``max_retries`` times,
    31 tries in all, as the authors) while fewer than ``keep_ratio`` of the pixels where
    ``labels[0] == 1`` are inside the crop; after that the last crop is kept.
    """

    def __init__(self, size: int, crop_type: str = "rand",
                 padding: Sequence[float] = IMAGENET_MEAN, ignore_label: int = IGNORE_LABEL,
                 keep_ratio: float = 0.85, max_retries: int = 30):
        if crop_type not in ("rand", "center"):
            raise ValueError(f"crop_type={crop_type!r} must be 'rand' or 'center'.")
        if size < 1:
            raise ValueError(f"crop size={size} must be >= 1.")
        self.size, self.crop_type, self.padding = int(size), crop_type, padding
        self.ignore_label, self.keep_ratio, self.max_retries = ignore_label, keep_ratio, max_retries

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator):
        s = self.size
        h, w = labels.shape[-2:]
        pad_h, pad_w = max(s - h, 0), max(s - w, 0)
        if pad_h or pad_w:
            border = (pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2)
            pad = torch.tensor(self.padding, dtype=image.dtype, device=image.device)[:, None, None]
            image = F.pad(image - pad, border) + pad
            labels = F.pad(labels, border, value=self.ignore_label)
            h, w = labels.shape[-2:]
        fg = (labels[0] == 1).to(torch.int64)
        total = int(fg.sum())
        # Integral image: foreground inside any crop in O(1) per candidate offset.
        integral = F.pad(fg.cumsum(0).cumsum(1), (1, 0, 1, 0))

        def inside(y: int, x: int) -> int:
            return int(integral[y + s, x + s] - integral[y, x + s] - integral[y + s, x]
                       + integral[y, x])

        for _ in range(self.max_retries + 1):
            if self.crop_type == "rand":
                y, x = int(rng.integers(0, h - s + 1)), int(rng.integers(0, w - s + 1))
            else:
                y, x = (h - s) // 2, (w - s) // 2
            if inside(y, x) >= self.keep_ratio * total or self.crop_type == "center":
                break
        return image[:, y : y + s, x : x + s], labels[:, y : y + s, x : x + s]

    def __repr__(self) -> str:
        return f"Crop({self.size}, {self.crop_type!r})"


class TestResize:
    """Test-time resize of the authors (``transform.Resize``, ``resized_val: True``).

    The long side becomes ``size`` and the short side ``int(short * size / long)``; then each
    is floored to a multiple of 8 (473 -> 472, 641 -> 640). The image is resized bilinearly,
    the labels with nearest, and both are pasted top-left into a ``size x size`` canvas: image
    padding 0 (before normalisation, so it becomes ``-mean/std``), label padding 255.
    """

    def __init__(self, size: int, ignore_label: int = IGNORE_LABEL):
        if size < 8:
            raise ValueError(f"test size={size} must be >= 8.")
        self.size, self.ignore_label = int(size), ignore_label

    def new_size(self, h: int, w: int) -> tuple[int, int]:
        """``(new_h, new_w)`` for an ``h x w`` input (both multiples of 8, long side <= size)."""
        if h >= w:
            new_h, new_w = self.size, int(w * (self.size / h))
        else:
            new_h, new_w = int(h * (self.size / w)), self.size
        return max(8, new_h // 8 * 8), max(8, new_w // 8 * 8)

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator | None = None):
        new_h, new_w = self.new_size(*labels.shape[-2:])
        img, lab = resize_pair(image, labels, new_h, new_w)
        canvas = image.new_zeros((image.shape[0], self.size, self.size))
        canvas[:, :new_h, :new_w] = img
        lab_canvas = labels.new_full((labels.shape[0], self.size, self.size), self.ignore_label)
        lab_canvas[:, :new_h, :new_w] = lab
        return canvas, lab_canvas

    def __repr__(self) -> str:
        return f"TestResize({self.size})"


class StretchResize:
    """HSNet's test-time resize: image and labels to ``size x size``, aspect ratio NOT kept.

    The image is resized bilinearly with antialiasing (HSNet applies torchvision's ``Resize``
    to a PIL image, whose bilinear filter widens when it shrinks; torch's ``antialias=True``
    follows PIL's filter, without PIL's rounding to uint8), the labels with nearest, as
    HSNet's ``F.interpolate(mask, size, mode="nearest")``. No padding: every pixel is image.
    Shapes: ``(3, H, W), (L, H, W) -> (3, size, size), (L, size, size)``.
    """

    def __init__(self, size: int):
        if size < 1:
            raise ValueError(f"test size={size} must be >= 1.")
        self.size = int(size)

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator | None = None):
        img = F.interpolate(image[None], size=(self.size, self.size), mode="bilinear",
                            align_corners=False, antialias=True)[0]
        return img, nearest_resize(labels, self.size)

    def __repr__(self) -> str:
        return f"StretchResize({self.size})"


def nearest_resize(labels: Tensor, size: int) -> Tensor:
    """``(..., H, W)`` integer labels to ``(..., size, size)`` with nearest, as
    ``F.interpolate(mode="nearest")`` (the source pixel of output ``i`` is
    ``floor(i * H / size)``), dtype kept."""
    lead = labels.shape[:-2]
    flat = labels.reshape(-1, 1, *labels.shape[-2:]).float()
    out = F.interpolate(flat, size=(size, size), mode="nearest")
    return out.reshape(*lead, size, size).to(labels.dtype)


class Normalize:
    """``(image - mean) / std`` per channel; labels unchanged."""

    def __init__(self, mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
        self.mean, self.std = mean, std

    def __call__(self, image: Tensor, labels: Labels, rng: np.random.Generator | None = None):
        mean = torch.tensor(self.mean, dtype=image.dtype, device=image.device)[:, None, None]
        std = torch.tensor(self.std, dtype=image.dtype, device=image.device)[:, None, None]
        return (image - mean) / std, labels

    def __repr__(self) -> str:
        return "Normalize(ImageNet x 255)"


def denormalize(image: Tensor) -> Tensor:
    """Undo :class:`Normalize` with the ImageNet statistics: ``(..., 3, H, W)`` back to 0..255."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=image.dtype, device=image.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, dtype=image.dtype, device=image.device)[:, None, None]
    return image * std + mean


def train_transform(size: int, scale: tuple[float, float] = (0.9, 1.1),
                    rotate: tuple[float, float] = (-10.0, 10.0)) -> Compose:
    """The authors' meta-training augmentation (spec §3) with a ``size x size`` crop.

    PASCAL: ``size=473, scale=(0.9, 1.1)``; COCO: ``size=641, scale=(0.8, 1.25)``.
    """
    return Compose([
        RandScale(scale),
        RandRotate(rotate, padding=IMAGENET_MEAN, ignore_label=IGNORE_LABEL, p=0.5),
        RandomGaussianBlur(kernel=5, p=0.5),
        RandomHorizontalFlip(p=0.5),
        Crop(size, crop_type="rand", padding=IMAGENET_MEAN, ignore_label=IGNORE_LABEL),
        Normalize(),
    ])


def test_transform(size: int) -> Compose:
    """The authors' evaluation transform: :class:`TestResize` then :class:`Normalize`."""
    return Compose([TestResize(size), Normalize()])


def hsnet_test_transform(size: int = 400) -> Compose:
    """HSNet's evaluation transform: :class:`StretchResize` to ``size x size`` (400 in HSNet)
    then :class:`Normalize` (HSNet's ``ToTensor`` + ``Normalize`` with the same statistics)."""
    return Compose([StretchResize(size), Normalize()])


# Not a test for pytest to collect.
test_transform.__test__ = False  # type: ignore[attr-defined]
TestResize.__test__ = False  # type: ignore[attr-defined]
