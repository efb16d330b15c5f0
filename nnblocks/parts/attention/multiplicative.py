"""`multiplicative`: Luong attention, "general" score (Luong, Pham and Manning 2015)."""

from __future__ import annotations

import torch
from torch import nn

from nnblocks.parts.attention._base import KeyValueAttention
from nnblocks.parts.attention._checks import check_dropout, check_heads
from nnblocks.registry import register

__all__ = ["MultiplicativeAttention"]


@register("attention", "multiplicative")
class MultiplicativeAttention(KeyValueAttention):
    """Multiplicative (Luong "general") attention: ``score(q, k) = q^T W_a k``.

    Luong et al. 2015, eq. 8: the query is compared with a linear map of each key, without
    scaling; the output is the weighted sum of the raw values (the context vector), with
    no value or output projection. With ``heads > 1`` each head compares its own
    ``dim // heads`` slice. Runs on the fused SDPA kernel (``scale=1``).

    Args:
        dim: width of queries, keys and values.
        heads: number of heads; must divide ``dim``.
        dropout: dropout on the attention weights, in training only.

    Parameters: ``k_proj`` (``W_a``, no bias).

    Call arguments:
        x: ``[B, Tq, dim]`` queries (the decoder state).
        context: ``[B, Tk, dim]`` keys and values (the encoder outputs), or None for
            self-attention over ``x``.
        mask: bool, True = may attend: ``[B, Tk]``, ``[B, Tq, Tk]`` or broadcastable to
            ``[B, H, Tq, Tk]``; with a cache it covers all keys.
        causal: query ``i`` attends keys ``<= i`` (offset by the cache).
        need_weights: also return the weights ``[B, H, Tq, Tk]``.
        cache: a dict (``{}`` at first); keeps the mapped keys (the mapped context in
            cross-attention, computed once).

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or ``cache`` when asked. Query rows
        with no key to attend are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, or a mask that does not fit.
        SpecError: (construction) ``heads`` does not divide ``dim``, or a bad ``dropout``.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build("multiplicative", "attention", dim=32)
        >>> state, encoded = torch.randn(2, 1, 32), torch.randn(2, 7, 32)
        >>> out, weights = attn(state, context=encoded, need_weights=True)
        >>> weights.shape
        torch.Size([2, 1, 1, 7])
    """

    part_name = "multiplicative"

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.0):
        super().__init__()
        check_heads(self.part_name, dim, heads)
        check_dropout(self.part_name, dropout)
        # Luong's general score has no 1/sqrt(d): scale 1.
        self._setup(dim, heads, heads, dim // heads, dropout, 1.0)
        self.k_proj = nn.Linear(dim, dim, bias=False)  # W_a

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(x)

    def _keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split_heads(self.k_proj(src)), self._split_heads(src)

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        return o
