"""Offline datasets bundled with scikit-learn: digits (images), wine, diabetes (tables).

Only the sets shipped inside scikit-learn's wheel are used (``load_digits``,
``load_wine``, ``load_diabetes``): nothing is downloaded.
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources.arrays import from_tensors
from nnblocks.data.sources.tabular import from_dataframe
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["digits", "wine", "diabetes"]


def _split(split: Any, seed: int, *, stratified: bool, valid: float, test: float) -> Any:
    if split is not None:
        return split
    return {
        "name": "stratified" if stratified else "random",
        "valid": valid,
        "test": test,
        "seed": seed,
    }


def _table(name: str, df: Any, task: str, split: Any, seed: int, **options: Any) -> DataBundle:
    """A bundled table whose target is column ``target``: by default 15% valid, 20% test."""
    default = _split(split, seed, stratified=task == "classification", valid=0.15, test=0.2)
    return from_dataframe(
        df, "target", task=task, split=default, where=f"dataset `{name}`", **options
    )


@register("dataset", "digits")
def digits(
    flatten: bool = False,
    split: Any = None,
    seed: int = 0,
    normalize: Any = "normalize",
    augment: Any = None,
) -> DataBundle:
    """Handwritten digits 0-9: 1,797 grey 8x8 images bundled with scikit-learn.

    scikit-learn's copy of the test part of the UCI optical recognition of handwritten
    digits set; nothing is downloaded.

    Args:
        flatten: give ``x`` as ``[N, 64]`` features (for an MLP: ``in_features=64``)
            instead of ``[N, 1, 8, 8]`` images (for a CNN: ``in_channels=1``).
        split: a split spec; default stratified, 10% valid, 20% test (360 test images).
        seed: seed of the default split.
        normalize: per-channel (images) or per-pixel (flattened) normalisation fitted on
            the training split; None keeps pixel values in [0, 1].
        augment: augmentation specs for training batches (images only), e.g.
            ``[{"name": "affine", "degrees": 10}, {"name": "random_crop", "padding": 1}]``.
            Not ``flip``: a mirrored digit is another symbol.

    Returns:
        a classification DataBundle (10 classes).

    Raises:
        DataError: ``augment`` with ``flatten=True``.

    Example:
        >>> bundle = nnblocks.data.load("digits")  # doctest: +SKIP
        >>> bundle.task.model_args  # doctest: +SKIP
        {'num_classes': 10, 'in_channels': 1}
    """
    from sklearn.datasets import load_digits

    if flatten and augment:
        raise DataError(
            "dataset `digits`: `augment` works on images; it cannot be used with flatten=True."
        )
    raw = load_digits()
    x = torch.from_numpy(raw.images).float().div(16.0)[:, None]  # [N, 1, 8, 8], pixels in [0, 1]
    if flatten:
        x = x.flatten(1)  # [N, 64]
    y = torch.from_numpy(raw.target).long()
    return from_tensors(
        x,
        y,
        task="classification",
        split=_split(split, seed, stratified=True, valid=0.1, test=0.2),
        normalize=normalize,
        augment=augment,
        classes=[str(c) for c in raw.target_names],
    )


@register("dataset", "wine")
def wine(split: Any = None, seed: int = 0, normalize: Any = "normalize") -> DataBundle:
    """Wine cultivar from 13 chemical measurements (178 wines, 3 classes; tabular).

    Args:
        split: a split spec; default stratified, 15% valid, 20% test.
        seed: seed of the default split.
        normalize: normalisation of the 13 features fitted on the training split.

    Returns:
        a classification DataBundle: ``(x_num [N, 13], y)``, ``in_features=13``,
        ``num_classes=3``.

    Example:
        >>> nnblocks.data.load("wine").sizes()  # doctest: +SKIP
        {'train': 116, 'valid': 26, 'test': 36}
    """
    from sklearn.datasets import load_wine

    raw = load_wine(as_frame=True)
    df = raw.frame.copy()
    df["target"] = [str(raw.target_names[i]) for i in df["target"]]
    return _table("wine", df, "classification", split, seed, normalize=normalize)


@register("dataset", "diabetes")
def diabetes(
    split: Any = None, seed: int = 0, normalize: Any = "normalize", normalize_target: bool = True
) -> DataBundle:
    """Diabetes progression from 10 baseline measurements: 442 patients, regression.

    The target (disease progression one year later) ranges 25-346 in original units.

    Args:
        split: a split spec; default random, 15% valid, 20% test.
        seed: seed of the default split.
        normalize: normalisation of the features fitted on the training split.
        normalize_target: train on the normalised target; MAE and ``evaluate`` report in
            original units.

    Returns:
        a regression DataBundle: ``(x_num [N, 10], y [N, 1])``, ``in_features=10``,
        ``out_features=1``.

    Example:
        >>> nnblocks.data.load("diabetes").task.name  # doctest: +SKIP
        'regression'
    """
    from sklearn.datasets import load_diabetes

    df = load_diabetes(as_frame=True, scaled=False).frame
    return _table(
        "diabetes",
        df,
        "regression",
        split,
        seed,
        normalize=normalize,
        normalize_target=normalize_target,
    )
