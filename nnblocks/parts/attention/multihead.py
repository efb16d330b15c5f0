"""Multi-head attention and its grouped-query relatives: `mha`, `gqa`, `mqa`.

One implementation, `GroupedQueryAttention`: `mha` is the case ``kv_heads == heads``
(Vaswani et al. 2017), `mqa` the case ``kv_heads == 1`` (Shazeer 2019), `gqa` anything
between (Ainslie et al. 2023). All three share parameter names, so weights copy across.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.parts._docs import shared_sections
from nnblocks.parts.attention._base import KeyValueAttention
from nnblocks.parts.attention._checks import check_dropout, check_heads, check_option
from nnblocks.parts.boundary import is_positive_int
from nnblocks.registry import register

__all__ = ["GroupedQueryAttention", "MultiHeadAttention", "MultiQueryAttention"]

_CALL_DOC = """
    Call arguments:
        x: ``[B, Tq, dim]`` queries (and keys/values in self-attention).
        context: ``[B, Tk, dim]`` keys/values for cross-attention, or None.
        mask: bool, True = may attend: ``[B, Tk]`` per key, ``[B, Tq, Tk]``, or
            broadcastable to ``[B, H, Tq, Tk]``. With a cache it covers all keys, cached
            and new. Note: ``torch.nn.MultiheadAttention`` uses the opposite convention
            (True = blocked); pass ``~mask`` when porting its masks.
        causal: query ``i`` attends keys at positions ``<= i`` (offset by the cache).
        need_weights: also return the weights ``[B, H, Tq, Tk]`` (before dropout); this
            takes the explicit path instead of the fused kernel.
        cache: a dict (``{}`` at the first step) for incremental decoding; the keys and
            values seen so far are kept in it (cross-attention keeps the projected
            context, so pass the same context at every step).

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or the new ``cache`` when asked, in the
        order ``(out, weights, cache)``. Query rows with no key to attend are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, a mask that does not fit,
            or a cache from another batch.
        SpecError: (construction) ``heads`` does not divide ``dim``, ``kv_heads`` does not
            divide ``heads``, a bad ``dropout``, or an absolute ``position`` part.
"""


# The shared call documentation, put before each class's own Example.
_document = shared_sections(_CALL_DOC)


@register("attention", "gqa")
@_document
class GroupedQueryAttention(KeyValueAttention):
    """Grouped-query attention: groups of query heads share one key/value head.

    Ainslie et al. 2023 (GQA): ``kv_heads`` key/value heads serve ``heads`` query heads;
    query head ``h`` reads key/value head ``h // (heads // kv_heads)``. This shrinks the
    decoding cache by ``heads / kv_heads`` at little cost in quality. Runs on
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available).

    Args:
        dim: model width; ``dim // heads`` is the head width.
        heads: number of query heads; must divide ``dim``.
        kv_heads: number of key/value heads; must divide ``heads``. None: ``heads // 2``
            when ``heads`` is even, else 1 (so a bare ``"gqa"`` differs from ``"mha"``).
        dropout: attention dropout probability, applied in training only.
        bias: whether the four projections have biases.
        position: a relative position spec (``"rotary"``, ``"alibi"``, a dict, or a
            module), built with ``dim=head_dim, heads=heads``; None for no relative positions.
        head_dim: width of each query/key/value head; None: ``dim // heads`` (then
            ``heads`` must divide ``dim``). Some pretrained models use another width
            (Llama-style configs with ``head_dim`` set), so the projections map ``dim`` to
            ``heads * head_dim`` and back.
        out_bias: whether the output projection has a bias; None: as ``bias`` (Qwen2 has
            query/key/value biases but none on the output).

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (``nn.Linear``).

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build({"name": "gqa", "kv_heads": 2}, "attention", dim=32, heads=4)
        >>> attn(torch.randn(2, 5, 32), causal=True).shape
        torch.Size([2, 5, 32])
    """

    part_name = "gqa"

    def __init__(
        self,
        dim: int,
        heads: int,
        kv_heads: int | None = None,
        dropout: float = 0.0,
        bias: bool = True,
        position: Any = None,
        head_dim: int | None = None,
        out_bias: bool | None = None,
    ):
        super().__init__()
        if head_dim is None:
            check_heads(self.part_name, dim, heads)
            head_dim = dim // heads
        else:
            ok = is_positive_int(head_dim)
            check_option(self.part_name, "head_dim", head_dim, ok, "a positive integer or None")
            check_heads(self.part_name, dim, 1)  # dim alone: heads need not divide it
            check_heads(self.part_name, heads * head_dim, heads)
        if kv_heads is None:
            kv_heads = heads // 2 if heads % 2 == 0 else 1
        check_heads(self.part_name, heads * head_dim, heads, kv_heads)
        check_dropout(self.part_name, dropout)
        self._setup(dim, heads, kv_heads, head_dim, dropout, None, position)
        self.q_proj = nn.Linear(dim, heads * head_dim, bias=bias)
        self.k_proj = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.v_proj = nn.Linear(dim, kv_heads * head_dim, bias=bias)
        self.out_proj = nn.Linear(
            heads * head_dim, dim, bias=bias if out_bias is None else out_bias
        )

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.q_proj(x))  # [B, H, T, Dh]

    def _keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        k = self._split_heads(self.k_proj(src), self.kv_heads)
        v = self._split_heads(self.v_proj(src), self.kv_heads)
        return k, v  # [B, Hkv, T, Dh]

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        return self.out_proj(o)


class _FixedKeyValueHeads(GroupedQueryAttention):
    """`mha` and `mqa`: the key/value head count follows from the name (``heads``, or one
    when ``one_kv_head``), so their one constructor has no ``kv_heads``."""

    one_kv_head = False

    def __init__(
        self,
        dim: int,
        heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        position: Any = None,
    ):
        kv_heads = 1 if self.one_kv_head else heads
        super().__init__(
            dim, heads, kv_heads=kv_heads, dropout=dropout, bias=bias, position=position
        )


@register("attention", "mha")
@_document
class MultiHeadAttention(_FixedKeyValueHeads):
    """Multi-head attention (Vaswani et al. 2017) on the fused SDPA kernel.

    Without a mask, a causal pass hands ``is_causal=True`` to
    ``F.scaled_dot_product_attention`` so its flash/efficient kernels run and no ``[T, T]``
    matrix is built. Matches ``torch.nn.MultiheadAttention(batch_first=True)`` with the same
    weights (mind the opposite mask convention, below).

    Args:
        dim: model width; ``dim // heads`` is the head width.
        heads: number of heads; must divide ``dim``.
        dropout: attention dropout probability, applied in training only.
        bias: whether the four projections have biases.
        position: a relative position spec (``"rotary"``, ``"alibi"``, ...), or None.

    Parameters: ``q_proj``, ``k_proj``, ``v_proj``, ``out_proj`` (``nn.Linear``), the same
    names as `gqa` and `mqa`.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build("mha", "attention", dim=32, heads=4)
        >>> out, weights = attn(torch.randn(2, 5, 32), need_weights=True)
        >>> weights.shape
        torch.Size([2, 4, 5, 5])
    """

    part_name = "mha"


@register("attention", "mqa")
@_document
class MultiQueryAttention(_FixedKeyValueHeads):
    """Multi-query attention (Shazeer 2019): all query heads share one key/value head.

    The smallest decoding cache of the family (``heads`` times smaller than `mha`).

    Args:
        dim: model width; ``dim // heads`` is the head width.
        heads: number of query heads; must divide ``dim``.
        dropout: attention dropout probability, applied in training only.
        bias: whether the four projections have biases.
        position: a relative position spec (``"rotary"``, ``"alibi"``, ...), or None.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build("mqa", "attention", dim=32, heads=4)
        >>> out, cache = attn(torch.randn(2, 1, 32), causal=True, cache={})
        >>> cache["k"].shape
        torch.Size([2, 1, 1, 8])
    """

    part_name = "mqa"
    one_kv_head = True
