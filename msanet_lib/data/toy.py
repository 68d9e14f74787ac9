"""The offline toy benchmark: a procedurally generated few-shot segmentation dataset.

Twenty classes in four folds, read by the same loader as PASCAL-5i (fold ``i`` is novel for
classes ``5i+1 .. 5i+5``). It is written to disk in the VOC layout::

    toy/
      JPEGImages/toy_{train,val}_NNNNN.jpg      RGB, 96..128 x 112..128 px
      SegmentationClassAug/toy_..._NNNNN.png    palette PNG, class ids 1..20, 255 = boundary
      lists/{train,val}.txt                     "<image> <label>" pairs
      lists/pixels_{train,val}.json             per-image class areas (the list cache)
      toy_benchmark.json                        seed, sizes and the class table

**Why the support is needed.** A class is a combination of three attributes: a silhouette
(disc, square, triangle, star, ring), a surface pattern (stripes, checker, dots, grid,
speckle) and a hue (red, yellow, green, blue, purple). Class ``c = 5f + j`` (0-based, fold
``f``) has shape ``j``, pattern ``(j + f) mod 5`` and hue ``(j + 2f) mod 5``: each attribute
is shared by four classes, any two of them identify the class, and every novel class's
attributes are seen during training in other combinations. Images hold 1-3 objects of
different classes (mostly 2-3) over a cluttered background of soft colour noise, faint
patterns and distractor bars/crescents painted with the same patterns and hues; objects overlap
(later ones occlude earlier ones) and vary in size, aspect and rotation. Only the support
says which of the objects to segment. As in VOC, a one-pixel band along object boundaries
is labelled 255 (ignore).

Everything is vectorised over a chunk of images with numpy and is a pure function of
``(seed, split, chunk index)``, so the same seed always gives the same arrays; JPEG/PNG
bytes are identical for the same Pillow version.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from msanet_lib.data.list_files import PIXELS_FORMAT, count_class_pixels, pairs_digest, write_pairs
from msanet_lib.utils import data_root

TOY_META = "toy_benchmark.json"
TOY_FORMAT_VERSION = 1
DEFAULT_SEED = 0
DEFAULT_SIZES = {"train": 3000, "val": 1000}
CANVAS = 128
CHUNK = 32  # images generated together; fixed, so image i never depends on the total count

SHAPES = ("disc", "square", "triangle", "star", "ring")
PATTERNS = ("stripes", "checker", "dots", "grid", "speckle")
HUES = {"red": 0.0, "yellow": 0.14, "green": 0.33, "blue": 0.6, "purple": 0.75}
HEIGHTS = (96, 112, 128)
WIDTHS = (112, 128)
OBJECT_COUNT_P = (0.15, 0.45, 0.40)  # 1, 2 or 3 objects
MAX_OBJECTS = 3
MAX_DISTRACTORS = 4


@dataclass(frozen=True)
class ToyClass:
    """One toy class (``id`` is the 1-based label value)."""

    id: int
    shape: str
    pattern: str
    hue: str

    @property
    def name(self) -> str:
        return f"{self.hue} {self.pattern} {self.shape}"


def toy_classes() -> list[ToyClass]:
    """The 20 classes; class ``5f + j + 1`` is novel in fold ``f`` (module docstring)."""
    hue_names = list(HUES)
    out = []
    for c in range(20):
        f, j = divmod(c, 5)
        out.append(ToyClass(c + 1, SHAPES[j], PATTERNS[(j + f) % 5], hue_names[(j + 2 * f) % 5]))
    return out


# The pretraining world (stage 0, the toy world's ImageNet) draws its objects from the attribute
# combinations that are NOT one of the 20 classes, from its own random streams (splits 2, 3), so
# it never shows a benchmark class nor a benchmark image.
WORLDS = {"benchmark": {"train": 0, "val": 1}, "pretrain": {"train": 2, "val": 3}}


def _attribute_index(c: ToyClass) -> tuple[int, int, int]:
    return SHAPES.index(c.shape), PATTERNS.index(c.pattern), list(HUES).index(c.hue)


def pretrain_combinations() -> list[tuple[int, int, int]]:
    """The 105 ``(shape, pattern, hue)`` index triples that no toy class uses.

    Label value ``i + 1`` of a pretraining image is combination ``i``; every attribute value
    occurs, but never in one of the 20 classes' combinations.
    """
    used = {_attribute_index(c) for c in toy_classes()}
    return [(s, p, h) for s in range(len(SHAPES)) for p in range(len(PATTERNS))
            for h in range(len(HUES)) if (s, p, h) not in used]


def voc_palette() -> list[int]:
    """The PASCAL VOC colour map (768 ints), so toy labels look like VOC labels."""
    pal = np.zeros((256, 3), dtype=np.int64)
    for i in range(256):
        c, r, g, b = i, 0, 0, 0
        for k in range(8):
            r |= ((c >> 0) & 1) << (7 - k)
            g |= ((c >> 1) & 1) << (7 - k)
            b |= ((c >> 2) & 1) << (7 - k)
            c >>= 3
        pal[i] = (r, g, b)
    return pal.ravel().tolist()


# --------------------------------------------------------------------------------------------
# Vectorised drawing helpers; arrays are (N, H, W) over N objects/images at once.
# --------------------------------------------------------------------------------------------

def _hsv_to_rgb(h: np.ndarray, s: np.ndarray, v: np.ndarray) -> np.ndarray:
    """``(..., 3)`` RGB in 0..1 from hue/saturation/value arrays of equal shape."""
    i = np.floor(h * 6.0) % 6
    f = h * 6.0 - np.floor(h * 6.0)
    p, q, t = v * (1 - s), v * (1 - f * s), v * (1 - (1 - f) * s)
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v), (v, p, q)]
    rgb = [np.select([i == k for k in range(6)], [ch[n] for ch in choices]) for n in range(3)]
    return np.stack(rgb, axis=-1)


WINDOW = 72   # every object fits in a 72 x 72 window around its centre
MARGIN = 40  # canvas margin so that windows never leave the (padded) canvas


def _window_coords(cx, cy, angle, radius, aspect):
    """Object-frame coordinates of the pixels of each object's window.

    Returns ``(oy, ox)`` (window origins, ints) and ``(u, v)`` in pixels rotated by
    ``angle`` about the centre plus ``(un, vn)`` divided by the radius (shape unit = 1),
    each ``(N, WINDOW, WINDOW) float32``.
    """
    oy = np.floor(cy).astype(np.int64) - WINDOW // 2
    ox = np.floor(cx).astype(np.int64) - WINDOW // 2
    grid = np.arange(WINDOW, dtype=np.float32)
    dy = (oy[:, None] + grid[None] - cy[:, None]).astype(np.float32)[:, :, None]
    dx = (ox[:, None] + grid[None] - cx[:, None]).astype(np.float32)[:, None, :]
    ca = np.cos(angle).astype(np.float32)[:, None, None]
    sa = np.sin(angle).astype(np.float32)[:, None, None]
    u = ca * dx + sa * dy
    v = -sa * dx + ca * dy
    r = radius.astype(np.float32)[:, None, None]
    a = np.sqrt(aspect).astype(np.float32)[:, None, None]
    return oy, ox, u, v, u / (r * a), v * a / r


def _shape(kind: int, un: np.ndarray, vn: np.ndarray) -> np.ndarray:
    """Silhouette of one kind for a group of objects. Kinds 0..4 are :data:`SHAPES`;
    5 = bar and 6 = crescent are background distractors."""
    if kind == 0:
        return un * un + vn * vn <= 0.88**2
    if kind == 1:
        return np.maximum(np.abs(un), np.abs(vn)) <= 0.8
    if kind == 2:  # equilateral triangle, circumradius 1: three half-planes at distance 0.5
        edges = [un * np.cos(t) + vn * np.sin(t) for t in np.pi / 2 + np.arange(3) * 2 * np.pi / 3]
        return np.maximum.reduce(edges) <= 0.5
    if kind == 4:
        rho2 = un * un + vn * vn
        return (rho2 <= 1.0) & (rho2 >= 0.52**2)
    if kind == 5:
        return (np.abs(un) <= 1.4) & (np.abs(vn) <= 0.2)
    if kind == 6:  # crescent: a disc with an off-centre bite
        return (un * un + vn * vn <= 1.0) & ((un - 0.5) ** 2 + vn * vn > 0.8**2)
    rho = np.sqrt(un * un + vn * vn)
    theta = np.arctan2(vn, un)
    # kind 3: five-pointed star
    return rho <= 0.42 + 0.58 * np.abs(1 - 2 * ((theta * 5 / (2 * np.pi)) % 1.0)) ** 1.6


def _pattern(kind: int, u: np.ndarray, v: np.ndarray, period: np.ndarray,
             rng: np.random.Generator) -> np.ndarray:
    """Pattern intensity in 0..1 (object coordinates in pixels) for a group of objects:
    0 stripes, 1 checker, 2 dots, 3 grid, 4 speckle."""
    p = period.astype(np.float32)[:, None, None]
    fu, fv = u / p, v / p
    if kind == 0:
        out = np.sin(2 * np.pi * fu) > 0
    elif kind == 1:
        out = (np.floor(fu) + np.floor(fv)) % 2 > 0
    elif kind == 4:
        out = rng.random(u.shape, dtype=np.float32) < 0.5
    else:
        du, dv = fu - np.round(fu), fv - np.round(fv)
        out = (du * du + dv * dv < 0.09) if kind == 2 else (np.abs(du) < 0.14) | (np.abs(dv) < 0.14)
    return out.astype(np.float32)


def _by_kind(kinds: np.ndarray, n_kinds: int, fn, shape: tuple, dtype) -> np.ndarray:
    """Evaluate ``fn(kind, index)`` on each group of equal kind only, scattered back."""
    out = np.zeros(shape, dtype=dtype)
    for k in range(n_kinds):  # a handful of kinds, each group vectorised
        idx = np.flatnonzero(kinds == k)
        if idx.size:
            out[idx] = fn(k, idx)
    return out


def _smooth_noise(rng: np.random.Generator, n: int, cells: int, h: int, w: int) -> np.ndarray:
    """``(n, h, w)`` smooth noise in 0..1: a ``cells x cells`` random grid, bilinearly
    upsampled (separable interpolation matrices, no per-image loop)."""
    grid = rng.random((n, cells, cells)).astype(np.float32)

    def interp(size: int) -> np.ndarray:
        pos = np.linspace(0, cells - 1, size, dtype=np.float32)
        lo = np.clip(np.floor(pos).astype(int), 0, cells - 2)
        frac = pos - lo
        m = np.zeros((size, cells), dtype=np.float32)
        m[np.arange(size), lo] = 1 - frac
        m[np.arange(size), lo + 1] = frac
        return m

    return np.einsum("hy,nyx,wx->nhw", interp(h), grid, interp(w), optimize=True)


def _tones(rng: np.random.Generator, hue: np.ndarray, sat: tuple[float, float],
           light: tuple[float, float], dark: tuple[float, float]) -> tuple[np.ndarray, ...]:
    """Light and dark RGB tones ``(N, 3)`` (0..1) of the given hues, jittered."""
    n = hue.shape[0]
    h = (hue + rng.uniform(-0.02, 0.02, n)) % 1.0
    s = rng.uniform(*sat, n)
    return _hsv_to_rgb(h, s, rng.uniform(*light, n)), _hsv_to_rgb(h, s, rng.uniform(*dark, n))


def generate_chunk(seed: int, split: str, chunk: int, world: str = "benchmark",
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draw :data:`CHUNK` images on the full ``128 x 128`` canvas.

    ``world="benchmark"`` draws the 20 classes (label = class id); ``world="pretrain"`` draws
    the same kind of scenes with objects of :func:`pretrain_combinations` (label = combination
    index + 1) from separate random streams.

    Returns:
        images ``(CHUNK, 128, 128, 3) uint8``, labels ``(CHUNK, 128, 128) uint8`` (with the
        255 boundary band) and sizes ``(CHUNK, 2)`` = the (height, width) each image is cut to.
    """
    if world not in WORLDS or split not in WORLDS[world]:
        raise ValueError(f"world={world!r}, split={split!r}: worlds are {list(WORLDS)}, "
                         "splits train and val.")
    rng = np.random.default_rng((seed, WORLDS[world][split], chunk))
    n, s, nd, no = CHUNK, CANVAS, MAX_DISTRACTORS, MAX_OBJECTS
    n_layers = nd + no
    table = np.array([_attribute_index(c) for c in toy_classes()] if world == "benchmark"
                     else pretrain_combinations())
    n_kinds = len(table)
    cls_shape, cls_pattern = table[:, 0], table[:, 1]
    cls_hue = np.array(list(HUES.values()))[table[:, 2]]
    sizes = np.stack([rng.choice(HEIGHTS, n), rng.choice(WIDTHS, n)], axis=1)
    h_img, w_img = sizes[:, 0:1], sizes[:, 1:2]

    # Background: two soft colours mixed by smooth noise, with a faint pattern.
    noise = _smooth_noise(rng, n, 5, s, s)[..., None]
    bg_a, _ = _tones(rng, rng.random(n), (0.05, 0.45), (0.45, 0.9), (0.1, 0.3))
    bg_b, _ = _tones(rng, rng.random(n), (0.05, 0.45), (0.2, 0.6), (0.1, 0.3))
    bg_a, bg_b = bg_a.astype(np.float32), bg_b.astype(np.float32)
    background = bg_b[:, None, None] + (bg_a - bg_b)[:, None, None] * noise
    theta = rng.uniform(0, np.pi, n)
    ys, xs = np.mgrid[0:s, 0:s].astype(np.float32)
    along = np.cos(theta)[:, None, None] * xs + np.sin(theta)[:, None, None] * ys
    across = -np.sin(theta)[:, None, None] * xs + np.cos(theta)[:, None, None] * ys
    faint = _by_kind(rng.integers(0, 5, n), 5,
                     lambda k, i: _pattern(k, along[i], across[i], rng.uniform(5, 9, i.size), rng),
                     (n, s, s), np.float32)
    # The margins only catch windows hanging over the border; their content is discarded.
    image = np.empty((n, s + 2 * MARGIN, s + 2 * MARGIN, 3), dtype=np.float32)
    image[:, MARGIN:-MARGIN, MARGIN:-MARGIN] = background * (1 - 0.12 * faint[..., None])
    label = np.zeros(image.shape[:3], dtype=np.uint8)

    # Objects: 1-3 distinct classes per image, centred in distinct cells of a jittered 3x3
    # grid (so they overlap only partly). Distractors: bars and crescents painted with the
    # same patterns and any hue, labelled background; a quarter of them lie on top.
    n_obj = rng.choice([1, 2, 3], n, p=OBJECT_COUNT_P)
    cls = np.argsort(rng.random((n, n_kinds)), axis=1)[:, :no]
    cell = np.argsort(rng.random((n, 9)), axis=1)[:, :no]
    cy = (cell // 3 + rng.uniform(0.15, 0.85, cell.shape)) / 3 * h_img
    cx = (cell % 3 + rng.uniform(0.15, 0.85, cell.shape)) / 3 * w_img
    radius = np.exp(rng.uniform(np.log(13), np.log(30), cell.shape))
    n_dis = rng.integers(1, nd + 1, n)
    d_top = rng.random((n, nd)) < 0.25

    # Layer table, per image: distractors 0..nd-1 then objects 0..no-1, flattened (n * L,).
    shape_id = np.concatenate([np.where(rng.random((n, nd)) < 0.6, 5, 6), cls_shape[cls]], 1)
    pattern_id = np.concatenate([rng.integers(0, 5, (n, nd)), cls_pattern[cls]], 1).ravel()
    hue = np.concatenate([rng.random((n, nd)), cls_hue[cls]], 1).ravel()
    centre_x = np.concatenate([rng.random((n, nd)) * w_img, cx], 1).ravel()
    centre_y = np.concatenate([rng.random((n, nd)) * h_img, cy], 1).ravel()
    rad = np.concatenate([rng.uniform(10, 22, (n, nd)), radius], 1).ravel()
    aspect = rng.uniform(0.8, 1.25, n * n_layers)
    angle = rng.uniform(0, 2 * np.pi, n * n_layers)
    period = rng.uniform(5.0, 7.5, n * n_layers)
    label_val = np.concatenate([np.zeros((n, nd), np.uint8), (cls + 1).astype(np.uint8)], 1)
    on = np.concatenate([np.arange(nd)[None] < n_dis[:, None],
                         np.arange(no)[None] < n_obj[:, None]], 1)
    light, dark = _tones(rng, hue, (0.55, 0.95), (0.75, 1.0), (0.2, 0.45))

    oy, ox, u, v, un, vn = _window_coords(centre_x, centre_y, angle, rad, aspect)
    win = (n * n_layers, WINDOW, WINDOW)
    masks = _by_kind(shape_id.ravel(), 7, lambda k, i: _shape(k, un[i], vn[i]),
                     win, bool)
    pattern = _by_kind(pattern_id, 5, lambda k, i: _pattern(k, u[i], v[i], period[i], rng),
                       win, np.float32)
    shade = 1 - 0.12 * np.clip(un, -1, 1)  # soft lighting gradient across each object

    def grouped(x: np.ndarray) -> np.ndarray:
        return x.reshape(n, n_layers, *x.shape[1:])

    masks = grouped(masks) & on[..., None, None]
    pattern, shade, oy, ox = grouped(pattern), grouped(shade), grouped(oy), grouped(ox)
    light = grouped(light.astype(np.float32))
    dark = grouped(dark.astype(np.float32))

    # Painting order: distractors under the objects, the objects (later ones occlude earlier
    # ones), then the distractors on top. Each pass writes one window per image at once.
    passes = [(k, ~d_top[:, k]) for k in range(nd)]
    passes += [(nd + k, np.ones(n, bool)) for k in range(no)]
    passes += [(k, d_top[:, k]) for k in range(nd)]
    side = s + 2 * MARGIN
    # Flat pixel index of every window pixel: image i, row oy + r, column ox + c.
    win_flat = (np.arange(WINDOW)[:, None] + MARGIN) * side + np.arange(WINDOW)[None] + MARGIN
    flat_image, flat_label = image.reshape(-1, 3), label.reshape(-1)
    for k, chosen in passes:
        mk = masks[:, k] & chosen[:, None, None]
        where = np.nonzero(mk)
        start = (np.arange(n) * side * side + oy[:, k] * side + ox[:, k])[where[0]]
        pix = start + win_flat[where[1], where[2]]
        p = pattern[:, k][where][:, None]
        flat_image[pix] = (light[where[0], k] * p + dark[where[0], k] * (1 - p)) * shade[:, k][
            where][:, None]
        flat_label[pix] = label_val[where[0], k]
    image = image[:, MARGIN:-MARGIN, MARGIN:-MARGIN]
    label = np.ascontiguousarray(label[:, MARGIN:-MARGIN, MARGIN:-MARGIN])

    # Sensor noise (uniform, +-5 grey levels), then quantise.
    image = image * 255 + rng.uniform(-5, 5, image.shape).astype(np.float32)
    images = np.clip(np.round(image), 0, 255).astype(np.uint8)

    # One-pixel ignore band where the label changes (right or lower neighbour differs).
    edge = np.zeros(label.shape, dtype=bool)
    edge[:, :, :-1] |= label[:, :, :-1] != label[:, :, 1:]
    edge[:, :-1, :] |= label[:, :-1, :] != label[:, 1:, :]
    label[edge] = 255
    return images, label, sizes


def generate_split(seed: int, split: str, count: int, world: str = "benchmark",
                   ) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """The first ``count`` images and labels of a split, each cut to its own size.

    Image ``i`` depends only on ``(seed, world, split, i)``, not on ``count``.
    """
    images, labels = [], []
    for chunk in range(-(-count // CHUNK)):
        imgs, labs, sizes = generate_chunk(seed, split, chunk, world)
        for img, lab, (h, w) in zip(imgs, labs, sizes):
            if len(images) == count:
                break
            images.append(img[:h, :w])
            labels.append(lab[:h, :w])
    return images, labels


def _write_split(directory: Path, split: str, images: list[np.ndarray],
                 labels: list[np.ndarray]) -> None:
    palette = voc_palette()
    pairs, counts = [], []
    for i, (img, lab) in enumerate(zip(images, labels)):
        stem = f"toy_{split}_{i:05d}"
        img_rel, lab_rel = f"JPEGImages/{stem}.jpg", f"SegmentationClassAug/{stem}.png"
        Image.fromarray(img, "RGB").save(directory / img_rel, quality=92)
        lab_img = Image.fromarray(lab, "L")
        lab_img.putpalette(palette)
        lab_img.save(directory / lab_rel, optimize=False)
        pairs.append((img_rel, lab_rel))
        counts.append(count_class_pixels(lab, 20))
    write_pairs(directory / "lists" / f"{split}.txt", pairs)
    # The pixel cache of lists.py, filled from memory instead of re-reading every label.
    payload = {"format": PIXELS_FORMAT, "benchmark": "toy", "split": split,
               "digest": pairs_digest(pairs),
               "pixels": [{str(k): n for k, n in d.items()} for d in counts]}
    (directory / "lists" / f"pixels_{split}.json").write_text(
        json.dumps(payload, separators=(",", ":")))


def generate_toy_benchmark(directory: Path, seed: int = DEFAULT_SEED,
                           sizes: dict[str, int] | None = None) -> dict:
    """Write the toy benchmark into ``directory`` (must not exist); returns its metadata.

    Not atomic by itself: use :func:`ensure_toy_benchmark`, which writes into a temporary
    folder and renames it.
    """
    sizes = dict(DEFAULT_SIZES if sizes is None else sizes)
    directory = Path(directory)
    for sub in ("JPEGImages", "SegmentationClassAug", "lists"):
        (directory / sub).mkdir(parents=True, exist_ok=False)
    start = time.perf_counter()
    for split, count in sizes.items():
        images, labels = generate_split(seed, split, count)
        _write_split(directory, split, images, labels)
    meta = {
        "format": "msanet-toy-benchmark", "version": TOY_FORMAT_VERSION, "seed": seed,
        "sizes": sizes, "seconds": round(time.perf_counter() - start, 2),
        "classes": [{"id": c.id, "name": c.name, "shape": c.shape, "pattern": c.pattern,
                     "hue": c.hue} for c in toy_classes()],
    }
    (directory / TOY_META).write_text(json.dumps(meta, indent=1))
    return meta


def read_toy_meta(directory: Path) -> dict | None:
    """The metadata of a complete toy benchmark in ``directory``, or ``None``."""
    path = Path(directory) / TOY_META
    if not path.is_file():
        return None
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError:
        return None


def ensure_toy_benchmark(root: Path | str | None = None, *, seed: int | None = None,
                         sizes: dict[str, int] | None = None, force: bool = False) -> Path:
    """The toy benchmark folder, generated first if it is missing (a few seconds).

    Args:
        root: where it lives; default ``msanet_lib.utils.data_root() / "toy"``.
        seed, sizes: generation parameters (default seed 0, 3000 train / 1000 val). If a
            benchmark already exists with other parameters, an error says so (it is never
            overwritten silently).
        force: regenerate even if it exists (the old folder is replaced only after the new
            one is complete).

    Generation is atomic: everything is written to a temporary sibling folder that is
    renamed to ``root`` at the end, so an interrupted run never leaves a half dataset that
    looks complete.

    Raises:
        FileExistsError: ``root`` exists but is not a toy benchmark (it is left untouched).
        ValueError: a toy benchmark with different ``seed``/``sizes`` is already there.
    """
    root = Path(root).expanduser() if root is not None else data_root() / "toy"
    want_seed = DEFAULT_SEED if seed is None else int(seed)
    want_sizes = dict(DEFAULT_SIZES if sizes is None else sizes)

    def existing() -> Path | None:
        """``root`` if it holds a usable toy benchmark (unless ``force``), else None."""
        meta = read_toy_meta(root)
        if meta is None or force:
            return None
        if (seed is not None and meta.get("seed") != want_seed) or (
                sizes is not None and meta.get("sizes") != want_sizes):
            raise ValueError(
                f"{root} holds a toy benchmark with seed={meta.get('seed')}, "
                f"sizes={meta.get('sizes')}; asked for seed={want_seed}, sizes={want_sizes}. "
                "Pass another root, or force=True (`msanet-data generate toy --force`)."
            )
        return root

    if existing() is not None:
        return root
    meta = read_toy_meta(root)
    if root.exists() and meta is None and any(root.iterdir()):
        raise FileExistsError(
            f"{root} exists and is not a toy benchmark (no {TOY_META}); it was left untouched. "
            "Remove it or pass another root."
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.generating-", dir=root.parent))
    try:
        generate_toy_benchmark(tmp / "toy", want_seed, want_sizes)
        # Another process (a second notebook or command started on a fresh clone) may have
        # finished the same generation while this one ran: keep its copy, drop ours.
        if existing() is not None:
            return root
        if root.exists():
            if meta is None:
                root.rmdir()  # empty folder (checked above)
            else:
                old = tmp / "old"
                os.replace(root, old)  # replaced only now that the new one is complete
        try:
            os.replace(tmp / "toy", root)
        except OSError:
            # Another process finished first; keep its (identical) copy.
            if read_toy_meta(root) is None:
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root
