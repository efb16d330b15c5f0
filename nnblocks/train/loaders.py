"""Batching for the Learner: an index fast path for tensors, torch's DataLoader for the rest.

``TensorLoader`` batches a ``TensorData`` by indexing it with slices of one random
permutation per epoch, so a batch costs one gather per column instead of a per-sample
collate. The permutation of epoch ``e`` is drawn from a generator seeded with
``(seed, e)``, never from the global RNG, which is what makes a resumed run see the same
samples in the same order: a checkpoint stores the seed, the epoch and the batch position.

Under ``torchrun`` each process takes its contiguous share of every *global* batch, so N
processes with a global batch B see exactly the samples one process sees with batch B.

Any other dataset goes through ``torch.utils.data.DataLoader`` with a sampler that keeps
the same seeded order and sharding (``DatasetLoader``).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from nnblocks.errors import DataError

__all__ = [
    "TensorLoader",
    "DatasetLoader",
    "IterableLoader",
    "make_loader",
    "epoch_permutation",
    "to_batch",
]

# Tensors smaller than this are moved to the accelerator once instead of batch by batch.
_MOVE_WHOLE_BYTES = 256 * 2**20


def epoch_permutation(n: int, seed: int, epoch: int) -> torch.Tensor:
    """The permutation of ``range(n)`` used in ``epoch`` (independent of the global RNG)."""
    g = torch.Generator()
    # Mix seed and epoch so consecutive seeds do not give shifted copies of each other.
    g.manual_seed((int(seed) * 0x9E3779B97F4A7C15 + int(epoch) * 0xBF58476D1CE4E5B9) % 2**63)
    return torch.randperm(n, generator=g)


def to_batch(batch: Any) -> tuple[Any, ...]:
    """A batch as a tuple (a DataLoader yields lists; a single tensor becomes a 1-tuple)."""
    if isinstance(batch, tuple):
        return batch
    if isinstance(batch, list):
        return tuple(batch)
    return (batch,)


class _Shards:
    """Which rows of a global batch of indices belong to this process."""

    def __init__(self, batch_size: int, rank: int, world_size: int, where: str):
        if batch_size < 1:
            raise DataError(
                f"{where}: batch_size must be a positive integer. Received: {batch_size}"
            )
        if world_size > 1 and batch_size % world_size:
            raise DataError(
                f"{where}: the global batch size must be divisible by the number of processes "
                f"to split it evenly. Received: batch_size={batch_size}, processes={world_size}"
            )
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size

    def n_batches(self, n: int, drop_last: bool) -> int:
        return n // self.batch_size if drop_last else -(-n // self.batch_size)

    def indices(self, order: torch.Tensor, i: int) -> torch.Tensor:
        """Indices of global batch ``i`` for this process."""
        B = self.batch_size
        idx = order[i * B : (i + 1) * B]
        if self.world_size == 1:
            return idx
        short = (-idx.numel()) % self.world_size
        if short:  # pad the last global batch by wrapping around (as DistributedSampler does)
            idx = torch.cat([idx, order[:short]])
        per = idx.numel() // self.world_size
        return idx[self.rank * per : (self.rank + 1) * per]


class _SeededLoader:
    """What the index-ordered loaders share: the per-epoch seeded order, its sharding across
    processes, the resume position and the delivery device (arguments: see ``TensorLoader``).
    """

    def __init__(
        self,
        data: Any,
        batch_size: int,
        *,
        shuffle: bool,
        drop_last: bool = False,
        seed: int = 0,
        rank: int = 0,
        world_size: int = 1,
        device: torch.device | str | None = None,
    ):
        self.shards = _Shards(batch_size, rank, world_size, type(self).__name__)
        self.shuffle = shuffle
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0
        self.start = 0
        self.n_inputs = getattr(data, "n_inputs", 1)
        self.device = torch.device(device) if device is not None else None
        self.data = self._attach(data)

    def _attach(self, data: Any) -> Any:
        """The data as this loader keeps it (``TensorLoader`` may move it to the device)."""
        return data

    @property
    def batch_size(self) -> int:
        return self.shards.batch_size

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Deliver epoch ``epoch``'s order, beginning at batch ``start`` (for resuming)."""
        self.epoch = epoch
        self.start = start

    def __len__(self) -> int:
        return self.shards.n_batches(len(self.data), self.drop_last)


class TensorLoader(_SeededLoader):
    """Batches of a ``TensorData`` by indexing, one permutation per epoch.

    Args:
        data: a ``nnblocks.data.TensorData`` (anything with ``.tensors``, ``__len__`` and
            ``__getitem__(index_tensor) -> tuple``).
        batch_size: the global batch size (split evenly across processes).
        shuffle: a new permutation each epoch (training) or the stored order (evaluation).
        drop_last: drop a last incomplete batch.
        seed: seeds the permutation of each epoch together with the epoch number.
        rank, world_size: this process and the number of processes.
        device: where batches are delivered; small data is moved there once.

    Example:
        >>> loader = TensorLoader(TensorData(x, y), 64, shuffle=True, seed=0)
        >>> loader.set_epoch(3, start=10)  # resume: epoch 3 from its 11th batch
        >>> for xb, yb in loader: ...
    """

    def _attach(self, data: Any) -> Any:
        self._transfer = False
        self._order: torch.Tensor | None = None
        if self.device is not None and any(t.device != self.device for t in data.tensors):
            total = sum(t.numel() * t.element_size() for t in data.tensors)
            if total <= _MOVE_WHOLE_BYTES:
                return _moved(data, self.device)
            self._transfer = True
        return data

    def order(self) -> torch.Tensor:
        """The sample order of the current epoch (before sharding)."""
        n = len(self.data)
        where = self.data.tensors[0].device
        if not self.shuffle:
            if self._order is None or self._order.numel() != n:
                self._order = torch.arange(n, device=where)
            return self._order
        return epoch_permutation(n, self.seed, self.epoch).to(where)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, ...]]:
        order = self.order()
        data, shards = self.data, self.shards
        device, transfer = self.device, self._transfer
        if shards.world_size == 1:  # one split for the epoch instead of a slice per batch
            parts: Any = order.split(shards.batch_size)[self.start : len(self)]
        else:
            parts = (shards.indices(order, i) for i in range(self.start, len(self)))
        for idx in parts:
            batch = data[idx]
            if transfer:
                batch = tuple(t.pin_memory().to(device, non_blocking=True) for t in batch)
            yield batch


def _moved(data: Any, device: torch.device) -> Any:
    from nnblocks.data.tensors import TensorData

    if not isinstance(data, TensorData) and callable(getattr(data, "to", None)):
        return data.to(device)  # index-batched data that moves itself (TokenBlocks)
    if isinstance(data, TensorData):
        return TensorData(
            *(t.to(device) for t in data.tensors),
            n_inputs=data.n_inputs,
            trim=data.trim,
            names=data.names,
        )
    return data


class _EpochSampler(Sampler[int]):
    """Indices of this process's share of each global batch, in the seeded epoch order."""

    def __init__(self, loader: DatasetLoader):
        self.loader = loader

    def __iter__(self) -> Iterator[int]:
        lo = self.loader
        n = len(lo.data)
        order = epoch_permutation(n, lo.seed, lo.epoch) if lo.shuffle else torch.arange(n)
        for i in range(lo.start, len(lo)):
            yield from lo.shards.indices(order, i).tolist()

    def __len__(self) -> int:
        lo = self.loader
        return max(0, len(lo) - lo.start) * (lo.batch_size // lo.shards.world_size)


class DatasetLoader(_SeededLoader):
    """Batches of any map-style torch ``Dataset`` through a ``DataLoader``.

    Keeps the seeded per-epoch order and the per-process sharding of ``TensorLoader``, so
    resuming and ``torchrun`` behave the same. Defaults: a few workers when the machine has
    cores to spare, pinned memory when training on CUDA.

    Args:
        dataset: a map-style dataset whose items are tuples (or lists) of tensors.
        batch_size, shuffle: as ``TensorLoader``.
        collate_fn: how to stack samples (default: torch's ``default_collate``).
        num_workers: worker processes; ``None`` picks ``min(4, cores per process - 1)``.
        pin_memory: ``None`` pins when ``device`` is CUDA.
        **order: ``drop_last``, ``seed``, ``rank``, ``world_size``, ``device``: as
            ``TensorLoader``.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        *,
        shuffle: bool,
        collate_fn: Callable[[list[Any]], Any] | None = None,
        num_workers: int | None = None,
        pin_memory: bool | None = None,
        **order: Any,
    ):
        if not hasattr(dataset, "__len__") or not hasattr(dataset, "__getitem__"):
            raise DataError(
                "Received an invalid dataset: expected a TensorData or a map-style torch "
                f"Dataset (with __len__ and __getitem__). Received: {type(dataset).__name__}"
            )
        super().__init__(dataset, batch_size, shuffle=shuffle, **order)
        self.dataset = dataset
        world_size = self.shards.world_size
        if num_workers is None:
            cores = (os.cpu_count() or 1) // max(1, world_size)
            num_workers = max(0, min(4, cores - 1))
        if pin_memory is None:
            pin_memory = self.device is not None and self.device.type == "cuda"
        self.loader = DataLoader(
            dataset,
            batch_size=batch_size // world_size,
            sampler=_EpochSampler(self),
            collate_fn=collate_fn,
            num_workers=num_workers,
            pin_memory=pin_memory,
            persistent_workers=num_workers > 0,
        )

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return _delivered(self.loader, self.device)


class IterableLoader:
    """A ready ``DataLoader`` or any re-iterable of batches, used as given.

    Its order is its own, so a resumed run skips the batches already seen but cannot promise
    the same samples unless the iterable is deterministic.
    """

    def __init__(self, iterable: Any, device: torch.device | str | None = None):
        self.iterable = iterable
        self.epoch = 0
        self.start = 0
        self.n_inputs = getattr(getattr(iterable, "dataset", None), "n_inputs", 1)
        self.device = torch.device(device) if device is not None else None
        self.batch_size = getattr(iterable, "batch_size", None)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        self.epoch = epoch
        self.start = start
        sampler = getattr(self.iterable, "sampler", None)
        if sampler is not None and hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)  # a DistributedSampler reshuffles per epoch

    def __len__(self) -> int:
        try:
            return len(self.iterable)
        except TypeError as exc:
            raise DataError(
                f"the Learner needs data with a length; {type(self.iterable).__name__} has none."
            ) from exc

    def __iter__(self) -> Iterator[tuple[Any, ...]]:
        return _delivered(itertools.islice(self.iterable, self.start, None), self.device)


def _delivered(batches: Iterable[Any], device: torch.device | None) -> Iterator[tuple[Any, ...]]:
    """Each batch as a tuple, its tensors moved to ``device`` (left alone on the CPU)."""
    move = device is not None and device.type != "cpu"
    for batch in batches:
        batch = to_batch(batch)
        if move:
            batch = tuple(
                t.to(device, non_blocking=True) if isinstance(t, torch.Tensor) else t for t in batch
            )
        yield batch


def make_loader(
    data: Any,
    batch_size: int,
    *,
    shuffle: bool,
    seed: int = 0,
    rank: int = 0,
    world_size: int = 1,
    device: torch.device | str | None = None,
    drop_last: bool = False,
    collate_fn: Callable[[list[Any]], Any] | None = None,
    num_workers: int | None = None,
) -> TensorLoader | DatasetLoader | IterableLoader:
    """The right loader for ``data``: tensors by index, datasets by DataLoader, else as given.

    Raises:
        DataError: ``data`` is none of TensorData, a map-style Dataset, or an iterable.
    """
    order: dict[str, Any] = {
        "shuffle": shuffle, "drop_last": drop_last, "seed": seed, "rank": rank,
        "world_size": world_size, "device": device,
    }  # fmt: skip
    if hasattr(data, "tensors") and hasattr(data, "n_inputs"):
        return TensorLoader(data, batch_size, **order)
    if isinstance(data, DataLoader) or (
        hasattr(data, "__iter__") and not hasattr(data, "__getitem__")
    ):
        return IterableLoader(data, device=device)
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        return DatasetLoader(
            data, batch_size, collate_fn=collate_fn, num_workers=num_workers, **order
        )
    raise DataError(
        "Received invalid data: expected a nnblocks.data.TensorData, a torch Dataset or a "
        f"DataLoader. Received: {type(data).__name__}"
    )
