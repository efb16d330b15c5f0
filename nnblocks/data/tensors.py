"""`TensorData`: an in-memory dataset of aligned tensors, batched by indexing.

The Learner's fast path: a batch is ``tuple(t[idx] for t in tensors)`` for a tensor of
indices, so there is no per-sample collate. Padded token columns can be trimmed to the
longest row of each batch (``trim={column: pad_id}``), which keeps the cost of padding low.

A batch is a tuple of tensors. The first ``n_inputs`` go to the model
(``model(*batch[:n_inputs])``), the rest are targets (``loss(output, *batch[n_inputs:])``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnblocks.errors import DataError

__all__ = ["TensorData"]


class TensorData:
    """Aligned tensors (same first dimension) held in memory.

    Args:
        *tensors: tensors whose first dimension is the sample index.
        n_inputs: how many leading tensors are model inputs; the rest are targets.
        trim: ``{column: pad_id}``: cut these columns (``[N, T]`` token ids) to the longest
            non-pad row of each batch.
        names: optional names of the columns, for messages and ``show_batch``.

    Raises:
        DataError: no tensors, or tensors of different lengths.
    """

    def __init__(
        self,
        *tensors: torch.Tensor,
        n_inputs: int = 1,
        trim: Mapping[int, int] | None = None,
        names: Sequence[str] | None = None,
    ):
        if not tensors:
            raise DataError("TensorData needs at least one tensor.")
        n = tensors[0].shape[0]
        for i, t in enumerate(tensors):
            if not isinstance(t, torch.Tensor):
                raise DataError(
                    f"TensorData column {i}: expected a tensor, received {type(t).__name__}."
                )
            if t.shape[0] != n:
                raise DataError(
                    f"TensorData columns must have the same length: column 0 has {n} rows, "
                    f"column {i} has {t.shape[0]}."
                )
        if not 0 <= n_inputs <= len(tensors):
            raise DataError(
                f"n_inputs must be between 0 and {len(tensors)}. Received: n_inputs={n_inputs}"
            )
        self.tensors = tuple(tensors)
        self.n_inputs = n_inputs
        self.trim = dict(trim or {})
        self.names = list(names) if names is not None else [f"col{i}" for i in range(len(tensors))]

    def __len__(self) -> int:
        return self.tensors[0].shape[0]

    def __getitem__(self, index: int | slice | torch.Tensor) -> tuple[torch.Tensor, ...]:
        """One sample (int) or a batch (slice or tensor of indices), trimmed if asked."""
        batch = tuple(t[index] for t in self.tensors)
        if self.trim and not isinstance(index, int):
            batch = self._trim(batch)
        return batch

    def _trim(self, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
        out = list(batch)
        for col, pad in self.trim.items():
            t = out[col]
            if t.dim() < 2 or t.shape[1] == 0:
                continue
            used = (t != pad).any(dim=0).nonzero()
            length = int(used[-1]) + 1 if used.numel() else 1
            out[col] = t[:, :length]
        return tuple(out)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> TensorData:
        """A new TensorData with the rows at ``indices`` (same options)."""
        idx = torch.as_tensor(indices, dtype=torch.long)
        return TensorData(*(t[idx] for t in self.tensors), **self._options())

    def _options(self) -> dict[str, Any]:
        """The constructor options beside the tensors (what ``subset`` keeps)."""
        return {"n_inputs": self.n_inputs, "trim": self.trim, "names": self.names}

    def __repr__(self) -> str:
        cols = ", ".join(
            f"{n}: {tuple(t.shape)} {str(t.dtype).replace('torch.', '')}"
            for n, t in zip(self.names, self.tensors)
        )
        return f"TensorData({len(self)} rows; {cols}; n_inputs={self.n_inputs})"
