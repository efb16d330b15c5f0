"""Source: a folder of images, one sub-folder per class (``root/<class>/<image>``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._common import supervised_bundle
from nnblocks.errors import DataError

__all__ = ["from_image_folder", "IMAGE_SUFFIXES"]

log = logging.getLogger(__name__)
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def _load(path: Path, size: tuple[int, int], mode: str) -> torch.Tensor | None:
    """One image as ``[C, H, W]`` floats in [0, 1], or None (with a warning) if unreadable."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:
            img = opened.convert(mode).resize((size[1], size[0]), Image.Resampling.BILINEAR)
            data = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as exc:
        warnings.warn(
            f"skipping image `{path}`: it cannot be decoded ({exc}).", UserWarning, stacklevel=3
        )
        log.warning("skipping image %s: %s", path, exc)
        return None
    channels = len(mode) if mode != "L" else 1
    return data.view(size[0], size[1], channels).permute(2, 0, 1).float() / 255.0  # [C, H, W]


def from_image_folder(
    root: str | Path,
    *,
    size: int | Sequence[int] = 32,
    channels: int = 3,
    split: Any = None,
    normalize: Any = "normalize",
    augment: Any = None,
) -> DataBundle:
    """A classification DataBundle from ``root/<class name>/<image files>``.

    Images are decoded once, resized to ``size`` and held in memory as a float tensor
    ``[N, C, H, W]`` (the Learner's fast path). An image that fails to decode is skipped
    with a warning naming the file; the rest load.

    Args:
        root: the folder; each sub-folder is a class (sorted names = class ids).
        size: ``H`` (square) or ``(H, W)`` after resizing.
        channels: 3 (RGB) or 1 (grey).
        split: a split spec (default: stratified, 20% validation); see
            ``nnblocks.data.splits.make_splits``.
        normalize: per-channel normalisation fitted on the training images; None: none.
        augment: augmentation specs (e.g. ``["random_crop", "flip"]``) applied to training
            batches only.

    Returns:
        a DataBundle with ``model_args`` ``in_channels`` and ``num_classes``.

    Raises:
        DataError: ``root`` missing, no class folders, no readable image, an empty split.

    Example:
        >>> bundle = from_image_folder("pets/", size=64, augment=["random_crop", "flip"])  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder `{root}` not found.")
    if channels not in (1, 3):
        raise DataError(f"from_image_folder: `channels` must be 1 or 3. Received: {channels}")
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = "RGB" if channels == 3 else "L"
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError(f"image folder `{root}` has no sub-folders; expected one folder per class.")
    images, labels = [], []
    for d in class_dirs:
        for path in sorted(
            p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        ):
            img = _load(path, hw, mode)
            if img is not None:
                images.append(img)
                labels.append(d.name)
    if not images:
        raise DataError(
            f"image folder `{root}` holds no readable image ({', '.join(IMAGE_SUFFIXES)})."
        )
    x = torch.stack(images)  # [N, C, H, W]
    return supervised_bundle(
        x,
        labels,
        task="classification",
        split=split,
        normalize=normalize,
        augment=augment,
        input_kind="image",
        model_args={"in_channels": channels},
        where=f"image folder `{root}`",
        info={"size": list(hw), "channels": channels},
    )
