"""Mask handling shared by the attention parts.

Masks are boolean with True = may attend (DESIGN.md). Users hand in 2-D ``[B, Tk]``
(per key), 3-D ``[B, Tq, Tk]`` or 4-D masks broadcastable to ``[B, H, Tq, Tk]``; parts work
on one form, 4-D ``[B|1, H|1, Tq|1, Tk]``. Causality is a flag turned into a matrix only
when a fused kernel cannot take it as ``is_causal``.

Positions: query ``i`` of a call sits at ``q_start + i`` and key ``j`` at ``k_start + j``
(``q_start`` is the number of positions decoded before, ``k_start`` the position of the
first key kept in a cache). Causal means a key's position is at most the query's.
"""

from __future__ import annotations

import torch

from nnblocks.errors import ShapeError
from nnblocks.parts.attention._checks import shape_of

__all__ = ["normalize_mask", "causal_mask", "band_mask", "causal_is_trivial", "safe_rows"]


def normalize_mask(
    part: str,
    mask: torch.Tensor | None,
    *,
    batch: int,
    heads: int,
    tq: int,
    tk: int,
    device: torch.device,
) -> torch.Tensor | None:
    """Check a user mask and return it as ``[B|1, H|1, Tq|1, Tk]`` bool (a view, no copy).

    Args:
        part: the part's name, for messages.
        mask: None, or a bool mask of rank 2, 3 or 4 (True = may attend).
        batch, heads, tq, tk: the sizes it must fit; ``tk`` counts cached and new keys.
        device: the device of the queries.

    Raises:
        ShapeError: not a bool tensor, wrong rank or sizes, or another device.
    """
    if mask is None:
        return None

    def expected() -> str:
        # Formatted only on failure: formatting a size fixes it in a traced graph (export).
        return (
            f"a bool mask (True = may attend) of shape [B, Tk] = [{batch}, {tk}] (per key), "
            f"[B, Tq, Tk] = [{batch}, {tq}, {tk}], or broadcastable to [B, H, Tq, Tk] = "
            f"[{batch}, {heads}, {tq}, {tk}]"
        )

    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        got = f"dtype {mask.dtype}" if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ShapeError(
            f"attention part `{part}`: expected `mask` to be {expected()}. Received: {got}. "
            "(A float or int mask can be turned into one with `mask > 0`; note that "
            "torch.nn.MultiheadAttention uses True = blocked, the opposite.)"
        )
    sizes = {2: (batch, tk), 3: (batch, tq, tk), 4: (batch, heads, tq, tk)}
    full = sizes.get(mask.dim(), ())
    fits = bool(full) and all(s in (1, f) for s, f in zip(mask.shape, full))
    # Broadcasting a 2-D or 3-D mask over keys is almost surely a bug: it must name every key.
    if not fits or (mask.dim() < 4 and mask.shape[-1] != tk):
        keys_wrong = mask.shape[-1] != tk and not (mask.dim() == 4 and mask.shape[-1] == 1)
        hint = " With a cache, the mask covers all keys, cached and new." if keys_wrong else ""
        raise ShapeError(
            f"attention part `{part}`: expected `mask` to be {expected()}.{hint} "
            f"Received: mask of shape {shape_of(mask)}"
        )
    if mask.device != device:
        raise ShapeError(
            f"attention part `{part}`: expected `mask` on the device of x ({device}). "
            f"Received: mask on {mask.device}"
        )
    if mask.dim() == 2:
        return mask[:, None, None, :]  # [B, 1, 1, Tk]
    if mask.dim() == 3:
        return mask[:, None]  # [B, 1, Tq, Tk]
    return mask


def causal_is_trivial(tq: int, tk: int, q_start: int, k_start: int) -> bool:
    """True when every query may see every key (e.g. one decoding step over its cache)."""
    return q_start >= k_start + tk - 1


def causal_mask(tq: int, tk: int, q_start: int, k_start: int, device) -> torch.Tensor:
    """``[Tq, Tk]`` bool: key position <= query position."""
    q_pos = torch.arange(q_start, q_start + tq, device=device)
    k_pos = torch.arange(k_start, k_start + tk, device=device)
    return k_pos[None, :] <= q_pos[:, None]  # [Tq, Tk]


def band_mask(
    tq: int, tk: int, q_start: int, k_start: int, window: int, causal: bool, device
) -> torch.Tensor:
    """``[Tq, Tk]`` bool sliding window: ``0 <= q - k < window`` (causal) or ``|q - k| < window``."""
    q_pos = torch.arange(q_start, q_start + tq, device=device)
    k_pos = torch.arange(k_start, k_start + tk, device=device)
    dist = q_pos[:, None] - k_pos[None, :]  # [Tq, Tk]
    if causal:
        return (dist >= 0) & (dist < window)
    return dist.abs() < window


def safe_rows(allowed: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Make fully masked query rows attend everything, and say which rows were real.

    A softmax over a row of -inf is NaN, in the forward pass and in its gradient. Opening
    such rows keeps every kernel finite; the caller then zeroes them with ``valid``
    (so they read as "attended nothing": zeros, with zero gradients).

    Returns:
        ``(allowed, valid)``: the mask with empty rows opened, and ``[..., Tq, 1]`` bool.
    """
    valid = allowed.any(dim=-1, keepdim=True)  # [B|1, H|1, Tq|1, 1]
    return allowed | ~valid, valid
