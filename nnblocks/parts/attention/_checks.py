"""Checks at an attention part's boundary: constructor options and tensor shapes.

One message template for every part (Keras style): the place (the part), what was expected,
and what was received, so a wrong call is fixed from the message alone.
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.errors import ShapeError
from nnblocks.parts.boundary import check_probability, check_value, is_positive_int

__all__ = [
    "check_option",
    "check_heads",
    "check_dropout",
    "check_sequence",
    "check_cache",
    "shape_of",
]


def shape_of(t: Any) -> str:
    """``[2, 5, 16]`` for a tensor, the type name for anything else."""
    if isinstance(t, torch.Tensor):
        return "[" + ", ".join(str(s) for s in t.shape) + "]"
    return type(t).__name__


def check_option(part: str, name: str, value: Any, ok: bool, expected: str) -> None:
    """Raise SpecError unless ``ok``: "Received an invalid value for `heads` ...".

    Args:
        part: the part's name as registered (``"gqa"``), shown in the message.
        name: the constructor argument.
        value: what the user passed.
        ok: whether ``value`` is acceptable.
        expected: what would be acceptable, in words.

    Raises:
        SpecError: ``ok`` is False; the spec path of the build in progress is named.
    """
    check_value(ok, value, name, where=f"part `{part}`", expected=expected)


def check_heads(part: str, dim: Any, heads: Any, kv_heads: Any = None) -> None:
    """Check ``dim``, ``heads`` (divides dim) and ``kv_heads`` (divides heads)."""
    check_option(part, "dim", dim, is_positive_int(dim), "a positive integer")
    check_option(part, "heads", heads, is_positive_int(heads), "a positive integer")
    check_option(
        part, "heads", heads, dim % heads == 0, f"a positive integer that divides dim={dim}"
    )
    if kv_heads is not None:
        check_option(
            part,
            "kv_heads",
            kv_heads,
            is_positive_int(kv_heads) and heads % kv_heads == 0,
            f"a positive integer that divides heads={heads}",
        )


def check_dropout(part: str, dropout: Any) -> None:
    """Attention dropout is a probability in [0, 1)."""
    check_probability(dropout, "dropout", where=f"part `{part}`")


def check_sequence(
    part: str, name: str, t: Any, dim: int, *, batch: int | None = None
) -> tuple[int, int]:
    """Check that ``t`` is ``[B, T, dim]`` (with ``B == batch`` when given).

    Returns:
        ``(B, T)``.

    Raises:
        ShapeError: not a tensor, wrong rank, wrong width or batch, or no positions.
    """

    def want() -> str:  # formatted only on failure: formatting a size fixes it when exported
        return f"[B, T, {dim}]" if batch is None else f"[{batch}, T, {dim}]"

    if not isinstance(t, torch.Tensor) or t.dim() != 3 or t.shape[-1] != dim:
        raise ShapeError(
            f"attention part `{part}`: expected `{name}` of shape {want()} (batch, time, "
            f"dim={dim}). Received: {name} of shape {shape_of(t)}"
        )
    if not t.is_floating_point():  # token ids belong in an embedding, not in attention
        raise ShapeError(
            f"attention part `{part}`: expected `{name}` as floats {want()}. "
            f"Received: {name} of dtype {t.dtype}"
        )
    if batch is not None and t.shape[0] != batch:
        raise ShapeError(
            f"attention part `{part}`: expected `{name}` of shape {want()}, with the batch size "
            f"of x ({batch}). Received: {name} of shape {shape_of(t)}"
        )
    if t.shape[1] == 0:
        raise ShapeError(
            f"attention part `{part}`: expected `{name}` with at least one position. "
            f"Received: {name} of shape {shape_of(t)}"
        )
    return t.shape[0], t.shape[1]


def check_cache(part: str, cache: Any) -> dict[str, Any]:
    """A decoding cache is a dict (``{}`` at the first step); return a fresh copy of it."""
    if not isinstance(cache, dict):
        raise ShapeError(
            f"attention part `{part}`: expected `cache` to be a dict ({{}} at the first step, "
            f"then the dict the part returned). Received: {type(cache).__name__}"
        )
    offset = cache.get("offset", 0)
    # A symbolic int (torch.SymInt) stands for an int while torch.export traces a step.
    if not isinstance(offset, (int, torch.SymInt)) or offset < 0:
        raise ShapeError(
            f"attention part `{part}`: the cache's `offset` must be a non-negative int (the "
            f"number of positions already decoded). Received: offset={offset!r}"
        )
    return dict(cache)
