"""`AugmentedData`: a TensorData whose batches are augmented — the training split only."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnblocks.data.tensors import TensorData
from nnblocks.data.transforms.base import Transform
from nnblocks.errors import DataError

__all__ = ["AugmentedData"]


class AugmentedData(TensorData):
    """TensorData that applies augmentations to one column of every batch it returns.

    Datasets wrap only their training split in it, so validation and test data are never
    augmented. The stored tensors stay untouched; each ``data[idx]`` draws fresh random
    changes for that batch (batched: one call per transform per batch, not per sample).

    Args:
        *tensors, n_inputs, trim, names: as ``TensorData``.
        augment: the augmentation transforms, applied in order.
        column: the column they apply to (the images: 0).

    Raises:
        DataError: a transform that is not an augmentation, or a column out of range.

    Example:
        >>> from nnblocks.data.transforms.image import Noise
        >>> data = AugmentedData(torch.zeros(4, 1, 2, 2), torch.zeros(4), augment=[Noise(0.1)])
        >>> bool((data[torch.arange(4)][0] != 0).any())
        True
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        augment: Sequence[Transform] = (),
        column: int = 0,
        n_inputs: int = 1,
        trim: Mapping[int, int] | None = None,
        names: Sequence[str] | None = None,
    ):
        super().__init__(*tensors, n_inputs=n_inputs, trim=trim, names=names)
        for t in augment:
            if not getattr(t, "augmentation", False):
                raise DataError(
                    f"AugmentedData applies augmentations only; `{getattr(t, 'name', t)}` is "
                    "preprocessing (fit it on the training split and apply it to every split instead)."
                )
        if not 0 <= column < len(tensors):
            raise DataError(
                f"AugmentedData: column {column} out of range for {len(tensors)} columns."
            )
        self.augment = list(augment)
        self.column = column
        self.enabled = True

    def __getitem__(self, index: int | slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        batch = super().__getitem__(index)
        if not (self.enabled and self.augment):
            return batch
        out = list(batch)
        x = out[self.column]
        single = isinstance(index, int)
        if single:
            x = x.unsqueeze(0)
        for t in self.augment:
            x = t(x)
        out[self.column] = x[0] if single else x
        return tuple(out)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> AugmentedData:
        rows = super().subset(indices).tensors
        return AugmentedData(*rows, augment=self.augment, column=self.column, **self._options())

    def plain(self) -> TensorData:
        """The same tensors without augmentation (e.g. to evaluate on the training split)."""
        return TensorData(*self.tensors, **self._options())

    def __repr__(self) -> str:
        return super().__repr__()[:-1] + f"; augment={self.augment!r})"

    def describe(self) -> dict[str, Any]:
        return {"augment": [t.to_dict() for t in self.augment], "column": self.column}
