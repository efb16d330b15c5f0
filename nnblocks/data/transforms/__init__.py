"""Transforms (kind `transform`): preprocessing fitted on the training split only, and
augmentation applied to training batches only.

Preprocessing: ``normalize``, ``fill_missing``, ``categorify``. Augmentation:
``random_crop``, ``flip``, ``affine``, ``noise`` (applied by ``AugmentedData``).
"""

from nnblocks.data.transforms.augmented import AugmentedData
from nnblocks.data.transforms.base import Transform, fit_apply, transform_from_dict
from nnblocks.data.transforms.image import Affine, Flip, Noise, RandomCrop
from nnblocks.data.transforms.normalize import Normalize
from nnblocks.data.transforms.tabular import Categorify, FillMissing, Table

__all__ = [
    "Transform",
    "fit_apply",
    "transform_from_dict",
    "AugmentedData",
    "Normalize",
    "FillMissing",
    "Categorify",
    "Table",
    "RandomCrop",
    "Flip",
    "Affine",
    "Noise",
]
