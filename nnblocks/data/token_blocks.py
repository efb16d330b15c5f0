"""`TokenBlocks`: next-token examples cut from a (memory-mapped) token stream on demand.

Example ``i`` is the block of tokens ``i*T .. i*T+T`` and its next tokens ``i*T+1 ..
i*T+T+1`` (the same non-overlapping windows as the in-memory ``from_documents``; a tail
shorter than a block is not used). Nothing is materialised: a batch of block indices
``idx [B]`` is one gather ``tokens[idx*T + arange(T+1)]`` from the mapped file, so only the
pages of the sampled blocks are read and the corpus can be far larger than memory.

It batches like ``TensorData`` (``data[idx_tensor]`` -> a tuple of tensors, ``n_inputs``,
``tensors``), so the Learner's index loader drives it unchanged: a seeded permutation of
block indices per epoch (the same batches for the same seed) and an exact resume position
(epoch, batch), with no per-sample work.
"""

from __future__ import annotations

import mmap
from typing import Any

import torch

from nnblocks.errors import DataError

__all__ = ["TokenBlocks"]


class TokenBlocks:
    """Blocks of ``block_size`` tokens and their next tokens from one token array.

    Args:
        tokens: ``[N]`` token ids: an array over a memory map (a corpus split, see
            ``open_token_corpus``) or a 1-D tensor.
        block_size: ``T``, tokens per example.

    Raises:
        DataError: fewer than ``block_size + 1`` tokens, or a bad block size.

    Example:
        >>> blocks = TokenBlocks(torch.arange(100), block_size=8)
        >>> x, y = blocks[torch.tensor([0, 3])]
        >>> x.shape, int(y[1, 0])
        (torch.Size([2, 8]), 25)
    """

    n_inputs = 1
    names = ("tokens", "next")
    trim: dict[int, int] = {}

    # Pages of a mapped file that a batch touched stay resident (and count as the process's
    # memory) until the kernel needs them; dropping them every 32 batches keeps the
    # resident size bounded however long training runs. They stay in the page cache, so a
    # block read again soon costs a minor fault, not a disk read.
    release_every = 32

    def __init__(self, tokens: Any, block_size: int):
        if not isinstance(block_size, int) or block_size < 1:
            raise DataError(f"`block_size` must be a positive integer. Received: {block_size!r}")
        stream = tokens if isinstance(tokens, torch.Tensor) else torch.from_numpy(tokens)
        if stream.dim() != 1:
            raise DataError(f"TokenBlocks needs a 1-D token stream. Received {tuple(stream.shape)}")
        if stream.numel() < block_size + 1:
            raise DataError(
                f"a token stream of {stream.numel()} tokens holds no block of {block_size} tokens "
                "and its next tokens."
            )
        self.stream = stream
        self.block_size = block_size
        self._offsets = torch.arange(block_size + 1, device=stream.device)  # [T+1]
        base = getattr(tokens, "base", None)
        owner = base.obj if isinstance(base, memoryview) else None
        self._mapping: mmap.mmap | None = owner if isinstance(owner, mmap.mmap) else None
        self._gathers = 0

    @property
    def tensors(self) -> tuple[torch.Tensor, ...]:
        """The token stream (for the loader: its device and size, never indexed directly)."""
        return (self.stream,)

    def __len__(self) -> int:
        return (self.stream.numel() - 1) // self.block_size

    def __getitem__(self, index: int | slice | torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """One example (int: ``([T], [T])``) or a batch (indices: ``([B, T], [B, T])``)."""
        single = isinstance(index, int)
        if isinstance(index, slice):
            index = torch.arange(len(self))[index]
        idx = torch.as_tensor(index, dtype=torch.long).reshape(-1)
        if idx.numel() and (int(idx.min()) < -len(self) or int(idx.max()) >= len(self)):
            raise IndexError(f"block index out of range 0..{len(self) - 1}")
        idx = idx.remainder(len(self)).to(self.stream.device)
        window = self.stream[idx[:, None] * self.block_size + self._offsets].long()  # [B, T+1]
        self._gathers += 1
        if self._gathers % self.release_every == 0:
            self.release()
        x, y = window[:, :-1], window[:, 1:]  # [B, T] each
        return (x[0], y[0]) if single else (x, y)

    def release(self) -> None:
        """Drop the resident pages of the mapped file (the data is unchanged: it is re-read)."""
        if self._mapping is not None and hasattr(mmap, "MADV_DONTNEED"):
            self._mapping.madvise(mmap.MADV_DONTNEED)

    def to(self, device: torch.device | str) -> TokenBlocks:
        """The same blocks with the stream on ``device`` (a small corpus, gathered there)."""
        device = torch.device(device)
        stream = self.stream
        if device.type != "cpu" and stream.dtype in (torch.uint16, torch.uint32):
            stream = stream.to(torch.int32)  # unsigned 16/32-bit indexing is CPU-only
        return TokenBlocks(stream.to(device), self.block_size)

    def __repr__(self) -> str:
        return (
            f"TokenBlocks({len(self)} blocks of {self.block_size} tokens; "
            f"{self.stream.numel()} {str(self.stream.dtype).replace('torch.', '')} tokens)"
        )
