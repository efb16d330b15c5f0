"""Batching helpers for sequences: padding with masks, and length-bucketed batches.

Masks follow the library's mask contract (docs/interfaces.md): boolean, ``True`` = a real
token that may be attended to, 2-D ``[B, T]`` per key. Token models compute this mask from
``pad_id`` themselves (``padding_mask``); the helpers here are for code that needs it
explicitly, and for data that is not a ``TensorData`` (``collate_padded``).

In-memory ``TensorData`` needs none of this on the hot path: it stores tokens padded to a
fixed length and trims each batch to its longest row (``trim={col: pad_id}``). A
``LengthBucketSampler`` makes the rows of a batch similar in length, so the trim cuts more.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator, Sequence

import torch

from nnblocks.errors import DataError

__all__ = [
    "pad_sequences",
    "padding_mask",
    "sequence_lengths",
    "collate_padded",
    "LengthBucketSampler",
]


def pad_sequences(
    seqs: Sequence[Sequence[int] | torch.Tensor],
    *,
    pad_id: int = 0,
    length: int | None = None,
    side: str = "right",
) -> tuple[torch.Tensor, torch.Tensor]:
    """Pad variable-length id sequences into one tensor and its mask.

    Args:
        seqs: B sequences of token ids (lists or 1-D tensors).
        pad_id: the id written in padded places.
        length: pad to this length (default: the longest sequence).
        side: ``"right"`` (tokens first) or ``"left"`` (padding first, for decoder-only
            prompts that must end at the same position).

    Returns:
        ``(tokens [B, T] long, mask [B, T] bool)``, ``mask`` True at real tokens.

    Raises:
        DataError: a sequence longer than ``length``, or an unknown ``side``.

    Example:
        >>> tokens, mask = pad_sequences([[5, 6, 7], [8]], pad_id=0)
        >>> tokens.tolist(), mask.tolist()
        ([[5, 6, 7], [8, 0, 0]], [[True, True, True], [True, False, False]])
    """
    if side not in ("right", "left"):
        raise DataError(f"`side` must be 'right' or 'left'. Received: side={side!r}")
    lengths = [len(s) for s in seqs]
    longest = max(lengths, default=0)
    if length is None:
        length = longest
    elif longest > length:
        raise DataError(
            f"sequence {lengths.index(longest)} has {longest} tokens, longer than the padded length {length}. "
            "Raise `length` (or `max_len`) or drop long rows."
        )
    B = len(seqs)
    tokens = torch.full((B, length), pad_id, dtype=torch.long)  # [B, T]
    mask = torch.zeros((B, length), dtype=torch.bool)  # [B, T]
    total = sum(lengths)
    if total == 0:
        return tokens, mask
    # One scatter for the whole batch: building a tensor per row costs ~30 us each, which
    # dominates loading a dataset of 100k sentences.
    if isinstance(seqs[0], torch.Tensor):
        flat = torch.cat([torch.as_tensor(s, dtype=torch.long).flatten() for s in seqs])
    else:
        flat = torch.tensor(list(itertools.chain.from_iterable(seqs)), dtype=torch.long)
    sizes = torch.tensor(lengths, dtype=torch.long)  # [B]
    row = torch.repeat_interleave(torch.arange(B), sizes)  # [total]
    starts = torch.cumsum(sizes, 0) - sizes  # [B]
    col = torch.arange(total) - torch.repeat_interleave(starts, sizes)  # [total]
    if side == "left":
        col += (length - sizes)[row]
    tokens[row, col] = flat
    mask[row, col] = True
    return tokens, mask


def padding_mask(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """``[B, T]`` ids -> ``[B, T]`` bool mask, True where a token may be attended to."""
    return tokens != pad_id


def sequence_lengths(tokens: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """``[N, T]`` right-padded ids -> ``[N]`` lengths (position of the last non-pad + 1)."""
    if tokens.dim() != 2:
        raise DataError(
            f"sequence_lengths expects [N, T] token ids. Received shape {tuple(tokens.shape)}"
        )
    real = tokens != pad_id  # [N, T]
    positions = torch.arange(1, tokens.shape[1] + 1, device=tokens.device)  # [T]
    return (
        (real * positions).amax(dim=1)
        if tokens.shape[1]
        else torch.zeros(len(tokens), dtype=torch.long)
    )


def collate_padded(
    pad_id: int = 0,
) -> Callable[[list[tuple[torch.Tensor, ...]]], tuple[torch.Tensor, ...]]:
    """A ``DataLoader`` collate function for samples of 1-D id tensors of varying length.

    Each sample is a tuple of tensors; 1-D long tensors are padded to the batch's longest
    with ``pad_id``, other tensors are stacked.

    Example:
        >>> collate = collate_padded(0)
        >>> collate([(torch.tensor([1, 2]), torch.tensor(0)), (torch.tensor([3]), torch.tensor(1))])[0]
        tensor([[1, 2],
                [3, 0]])
    """

    def collate(samples: list[tuple[torch.Tensor, ...]]) -> tuple[torch.Tensor, ...]:
        out = []
        for column in zip(*samples):
            first = column[0]
            if first.dim() == 1 and not first.is_floating_point():
                out.append(pad_sequences(column, pad_id=pad_id)[0])
            else:
                out.append(torch.stack(column))
        return tuple(out)

    return collate


class LengthBucketSampler:
    """Batches of indices whose sequences have similar lengths (less padding per batch).

    Each epoch: shuffle all indices, cut them into pools of ``pool_batches`` batches, sort
    each pool by length, cut it into batches and shuffle the order of the batches. Sorting
    only inside a random pool keeps batches random across epochs while cutting most of the
    padding (the "bucket iterator" of torchtext / fairseq).

    Args:
        lengths: ``[N]`` length of each sequence (see ``sequence_lengths``).
        batch_size: indices per batch.
        shuffle: shuffle pools and batches (True for training, False gives a fixed,
            length-sorted order).
        pool_batches: how many batches one sorted pool holds.
        drop_last: drop a final short batch.
        seed: base seed; epoch ``e`` uses ``seed + e`` (call ``set_epoch``), so runs and
            resumed runs see the same batches.

    Yields:
        ``[b]`` long tensors of indices; ``data[idx]`` gives a trimmed batch of a
        ``TensorData``. Also usable as ``DataLoader(dataset, batch_sampler=...)``.

    Raises:
        DataError: ``batch_size`` or ``pool_batches`` below 1.

    Example:
        >>> sampler = LengthBucketSampler(torch.tensor([3, 9, 4, 8]), batch_size=2)
        >>> sorted(len(b) for b in sampler)
        [2, 2]
    """

    def __init__(
        self,
        lengths: torch.Tensor | Sequence[int],
        batch_size: int,
        *,
        shuffle: bool = True,
        pool_batches: int = 50,
        drop_last: bool = False,
        seed: int = 0,
    ):
        if batch_size < 1 or pool_batches < 1:
            raise DataError(
                "LengthBucketSampler needs batch_size >= 1 and pool_batches >= 1. "
                f"Received: batch_size={batch_size}, pool_batches={pool_batches}"
            )
        self.lengths = torch.as_tensor(lengths, dtype=torch.long)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.pool_batches = pool_batches
        self.drop_last = drop_last
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose batches ``__iter__`` yields next."""
        self.epoch = epoch

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    def __iter__(self) -> Iterator[torch.Tensor]:
        n = len(self.lengths)
        gen = torch.Generator().manual_seed(self.seed + self.epoch)
        order = torch.randperm(n, generator=gen) if self.shuffle else torch.arange(n)
        pool = self.batch_size * self.pool_batches
        batches: list[torch.Tensor] = []
        for start in range(0, n, pool):
            chunk = order[start : start + pool]
            # a stable sort keeps ties in their random order
            chunk = chunk[torch.sort(self.lengths[chunk], stable=True).indices]
            batches.extend(chunk.split(self.batch_size))
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        if self.shuffle:
            batches = [batches[i] for i in torch.randperm(len(batches), generator=gen).tolist()]
        self.epoch += 1 if self.shuffle else 0
        yield from batches
