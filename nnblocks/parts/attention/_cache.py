"""Self-attention caches written in place: buffers allocated ahead instead of a copy per step.

Concatenating the new keys to the cached ones copies the whole cache at every decoding
step, so a sequence of ``T`` tokens copies ``O(T^2)`` values. Here a cache's ``k`` and ``v``
are buffers ``[B, Hkv, capacity, Dh]`` of which the first ``filled`` positions hold keys; a
step writes its keys after them, and a full buffer is replaced by one longer by a chunk of
positions (one copy per chunk instead of one per step). The cache contract holds as before: every tensor is
batch-first, so beam search reorders the buffers with ``index_select(0, ...)``, and the
other values are ints.

A step writes into the buffers it received: the cache dict passed in must not be used
again once the step returned (the contract's rule: use the dict the part returns).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["cached_keys", "write_ahead", "CHUNK"]

CHUNK = 64  # buffers grow by whole chunks of positions


def cached_keys(state: dict[str, Any]) -> int:
    """Number of keys held in ``state["k"]`` (a buffer may be longer than that)."""
    filled = state.get("filled")
    return state["k"].shape[2] if filled is None else filled


def write_ahead(
    state: dict[str, Any], k: torch.Tensor, v: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Write ``k``, ``v`` ``[B, Hkv, T_new, D]`` after the cached keys, growing the buffers.

    Args:
        state: a cache holding ``k`` and ``v`` (and ``filled`` once allocated ahead);
            updated in place.
        k, v: the new keys and values.

    Returns:
        ``(k, v)`` ``[B, Hkv, T_cached + T_new, D]``: views of the buffers, every key so far.
    """
    buf_k, buf_v = state["k"], state["v"]
    filled = cached_keys(state)
    need = filled + k.shape[2]
    if need > buf_k.shape[2] or buf_k.dtype != k.dtype:
        # Whole chunks: a copy at every CHUNK positions, and at most CHUNK - 1 positions
        # allocated unused (beam search copies whole buffers when it reorders them).
        capacity = -(-need // CHUNK) * CHUNK
        buf_k = _grown(buf_k, filled, capacity, k)
        buf_v = _grown(buf_v, filled, capacity, v)
    buf_k[:, :, filled:need] = k
    buf_v[:, :, filled:need] = v
    state["k"], state["v"], state["filled"] = buf_k, buf_v, need
    return buf_k[:, :, :need], buf_v[:, :, :need]


def _grown(buffer: torch.Tensor, filled: int, capacity: int, like: torch.Tensor) -> torch.Tensor:
    """A buffer of ``capacity`` positions holding the first ``filled`` of ``buffer``."""
    b, h, _, d = like.shape
    grown = like.new_empty(b, h, capacity, d)  # [B, Hkv, capacity, D]
    grown[:, :, :filled] = buffer[:, :, :filled]
    return grown
