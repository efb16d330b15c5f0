"""Source: a folder of images, one sub-folder per class (``root/<class>/<image>``)."""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources._common import build_transforms, encode_labels, supervised_bundle
from nnblocks.data.splits import make_splits
from nnblocks.data.tasks import ClassificationTask
from nnblocks.errors import DataError

__all__ = ["from_image_folder", "ImageFiles", "IMAGE_SUFFIXES"]

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


class ImageFiles:
    """Images decoded (and augmented) one at a time from their files: a map-style dataset.

    For image folders too large to hold decoded in memory. Each ``data[i]`` opens, resizes,
    normalises and (training split) augments one image, which is real per-sample work, so
    the Learner loads it through a ``DataLoader`` with worker processes and pinned memory
    for CUDA (``nnblocks.train.loaders.DatasetLoader`` picks both by itself).

    Args:
        files: the image paths.
        labels: ``[N]`` class ids.
        size: ``(H, W)`` after resizing.
        mode: ``"RGB"`` or ``"L"``.
        normalize: fitted transforms applied to every image (``[1, C, H, W]`` at a time).
        augment: augmentations (training split only).
    """

    n_inputs = 1
    names = ("x", "y")

    def __init__(
        self,
        files: Sequence[Path],
        labels: torch.Tensor,
        *,
        size: tuple[int, int],
        mode: str,
        normalize: Sequence[Any] = (),
        augment: Sequence[Any] = (),
    ):
        self.files = list(files)
        self.labels = labels
        self.size, self.mode = size, mode
        self.normalize, self.augment = list(normalize), list(augment)

    def __len__(self) -> int:
        return len(self.files)

    def image(self, i: int) -> torch.Tensor:
        """Image ``i`` decoded and resized, ``[C, H, W]`` in [0, 1] (before normalising)."""
        img = _load(self.files[i], self.size, self.mode)
        if img is None:  # the file was readable when listed; it changed since
            raise DataError(f"image `{self.files[i]}` can no longer be decoded.")
        return img

    def __getitem__(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.image(int(i))[None]  # [1, C, H, W]
        for t in (*self.normalize, *self.augment):
            x = t(x)
        return x[0], self.labels[int(i)]


def _list_images(root: Path) -> tuple[list[Path], list[str]]:
    class_dirs = sorted(d for d in root.iterdir() if d.is_dir())
    if not class_dirs:
        raise DataError(f"image folder `{root}` has no sub-folders; expected one folder per class.")
    files, labels = [], []
    for d in class_dirs:
        for path in sorted(
            p for p in d.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()
        ):
            files.append(path)
            labels.append(d.name)
    if not files:
        raise DataError(f"image folder `{root}` holds no image ({', '.join(IMAGE_SUFFIXES)}).")
    return files, labels


def from_image_folder(
    root: str | Path,
    *,
    size: int | Sequence[int] = 32,
    channels: int = 3,
    split: Any = None,
    normalize: Any = "normalize",
    augment: Any = None,
    decode: str = "auto",
    memory_limit_mb: float = 1024,
) -> DataBundle:
    """A classification DataBundle from ``root/<class name>/<image files>``.

    Two ways to load, chosen by ``decode``: ``"memory"`` decodes every image once, resized
    to ``size``, into one float tensor ``[N, C, H, W]`` (the Learner's fast path; an image
    that fails to decode is skipped with a warning naming the file); ``"files"`` decodes
    each image when a batch needs it (``ImageFiles``), in worker processes with pinned
    memory; ``"auto"`` holds the images in memory when they fit in ``memory_limit_mb``
    decoded, else reads them from the files.

    Args:
        root: the folder; each sub-folder is a class (sorted names = class ids).
        size: ``H`` (square) or ``(H, W)`` after resizing.
        channels: 3 (RGB) or 1 (grey).
        split: a split spec (default: stratified, 20% validation); see
            ``nnblocks.data.splits.make_splits``.
        normalize: per-channel normalisation fitted on the training images (with
            ``"files"``, on up to 512 of them); None: none.
        augment: augmentation specs (e.g. ``["random_crop", "flip"]``) applied to training
            examples only.
        decode: ``"auto"``, ``"memory"`` or ``"files"``.
        memory_limit_mb: the decoded size up to which ``"auto"`` holds images in memory.

    Returns:
        a DataBundle with ``model_args`` ``in_channels`` and ``num_classes``.

    Raises:
        DataError: ``root`` missing, no class folders, no readable image, an empty split,
            a bad ``channels`` or ``decode``.

    Example:
        >>> bundle = from_image_folder("pets/", size=64, augment=["random_crop", "flip"])  # doctest: +SKIP
    """
    root = Path(root)
    if not root.is_dir():
        raise DataError(f"image folder `{root}` not found.")
    if channels not in (1, 3):
        raise DataError(f"from_image_folder: `channels` must be 1 or 3. Received: {channels}")
    if decode not in ("auto", "memory", "files"):
        raise DataError(
            f"from_image_folder: `decode` must be 'auto', 'memory' or 'files'. Received: {decode!r}"
        )
    hw = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    mode = "RGB" if channels == 3 else "L"
    files, labels = _list_images(root)
    decoded_mb = len(files) * channels * hw[0] * hw[1] * 4 / 2**20
    options = {"split": split, "normalize": normalize, "augment": augment, "channels": channels}
    if decode == "files" or (decode == "auto" and decoded_mb > memory_limit_mb):
        return _from_files(root, files, labels, hw, mode, **options)
    images, kept = _decode_all(root, files, labels, hw, mode)
    return supervised_bundle(
        images,
        kept,
        task="classification",
        split=split,
        normalize=normalize,
        augment=augment,
        input_kind="image",
        model_args={"in_channels": channels},
        where=f"image folder `{root}`",
        info={"size": list(hw), "channels": channels, "decode": "memory"},
    )


def _decode_all(
    root: Path, files: list[Path], labels: list[str], hw: tuple[int, int], mode: str
) -> tuple[torch.Tensor, list[str]]:
    """Every readable image decoded, ``[N, C, H, W]``, with its label (unreadable: skipped)."""
    images, kept = [], []
    for path, label in zip(files, labels):
        img = _load(path, hw, mode)
        if img is not None:
            images.append(img)
            kept.append(label)
    if not images:
        raise DataError(
            f"image folder `{root}` holds no readable image ({', '.join(IMAGE_SUFFIXES)})."
        )
    return torch.stack(images), kept


def _from_files(
    root: Path,
    files: list[Path],
    labels: list[str],
    hw: tuple[int, int],
    mode: str,
    *,
    split: Any,
    normalize: Any,
    augment: Any,
    channels: int,
) -> DataBundle:
    """The ``decode="files"`` bundle: splits of ``ImageFiles``, statistics from training."""
    from PIL import Image, UnidentifiedImageError

    readable = []
    for path, label in zip(files, labels):
        try:  # opening reads the header only: cheap, and catches files that are not images
            with Image.open(path) as img:
                img.verify()
            readable.append((path, label))
        except (UnidentifiedImageError, OSError, SyntaxError) as exc:
            warnings.warn(f"skipping image `{path}`: {exc}", UserWarning, stacklevel=3)
    if not readable:
        raise DataError(f"image folder `{root}` holds no readable image.")
    files, labels = [p for p, _ in readable], [lab for _, lab in readable]
    where = f"image folder `{root}`"
    splits = make_splits(
        split,
        len(files),
        labels=labels,
        default={"name": "stratified", "valid": 0.2},
        path=f"{where}.split",
    )
    ids, classes = encode_labels(labels, splits, where=where)
    plain = ImageFiles(files, ids, size=hw, mode=mode)
    norm = build_transforms(normalize, path=f"{where}.normalize")
    sample = splits.train[
        torch.randperm(len(splits.train), generator=torch.Generator().manual_seed(0))[:512]
    ]
    if norm:
        stack = torch.stack([plain.image(int(i)) for i in sample])  # [n, C, H, W]
        for t in norm:
            stack = t.fit(stack)(stack)
    aug = build_transforms(augment, path=f"{where}.augment")
    made: dict[str, Any] = {}
    for name, idx in splits.items():
        chosen = idx.tolist()
        made[name] = (
            ImageFiles(
                [files[i] for i in chosen],
                ids[idx],
                size=hw,
                mode=mode,
                normalize=norm,
                augment=aug if name == "train" else (),
            )
            if chosen
            else None
        )
    return DataBundle.from_splits(
        made,
        task=ClassificationTask(
            len(classes), classes=classes, model_args={"in_channels": channels}, input_kind="image"
        ),
        transforms={"x": norm[0]} if len(norm) == 1 else {f"x{i}": t for i, t in enumerate(norm)},
        info={
            "source": where,
            "sizes": splits.sizes(),
            "size": list(hw),
            "channels": channels,
            "decode": "files",
        },
    )
