"""Reading images and label maps from disk, with errors that name the file.

No OpenCV: images are read with Pillow as RGB (the authors read BGR with cv2 and convert
to RGB, so the arrays agree), labels as single-channel index PNGs.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from msanet_lib.data.splits import IGNORE_LABEL


def read_image(path: Path) -> np.ndarray:
    """An RGB image as ``(H, W, 3) float32`` in 0..255.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: the file exists but cannot be decoded.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            return np.asarray(img.convert("RGB"), dtype=np.float32)
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"cannot read image {path}: {err}. The file is corrupt or not an image; "
            "re-download or regenerate the dataset."
        ) from err


def read_label(path: Path, num_classes: int | None = None) -> np.ndarray:
    """A label map as ``(H, W) uint8`` of class ids (0 = background, 255 = ignore).

    Palette (``P``) PNGs give their indices, grey (``L``) PNGs their values, as VOC's
    ``SegmentationClassAug`` and the COCO label maps are stored.

    Args:
        path: PNG file.
        num_classes: if given, every value must be in ``0..num_classes`` or 255.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: undecodable file, a colour (RGB) label, or values outside the class ids.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"label file not found: {path}")
    try:
        with Image.open(path) as img:
            mode = img.mode
            if mode not in ("P", "L", "I", "I;16"):
                raise ValueError(
                    f"label {path} has image mode {mode!r}; a label must be a single-channel "
                    "PNG of class ids (mode 'P' or 'L'), not a colour rendering."
                )
            label = np.array(img)  # a writable copy
    except (UnidentifiedImageError, OSError, SyntaxError) as err:
        raise ValueError(
            f"cannot read label {path}: {err}. The file is corrupt or not a PNG; "
            "re-download or regenerate the dataset."
        ) from err
    if label.dtype != np.uint8:
        if label.size and (label.min() < 0 or label.max() > 255):
            raise ValueError(
                f"label {path} holds values outside 0..255 "
                f"(min {label.min()}, max {label.max()})."
            )
        label = label.astype(np.uint8)
    if num_classes is not None:
        check_label_values(label, num_classes, path)
    return label


def check_label_values(label: np.ndarray, num_classes: int, source: Path | str) -> None:
    """Raise ``ValueError`` naming ``source`` if ``label`` holds a value that is neither a
    class id ``0..num_classes`` nor the ignore label 255."""
    bad = (label > num_classes) & (label != IGNORE_LABEL)
    if bad.any():
        values = np.unique(label[bad]).tolist()
        raise ValueError(
            f"label {source} holds values {values}, which are neither class ids 0..{num_classes} "
            f"nor the ignore label {IGNORE_LABEL}. Is this a label map of this dataset "
            "(colour PNGs and instance masks are not)?"
        )
