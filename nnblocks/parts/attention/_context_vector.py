"""`ContextVectorAttention`: the base of the RNN-era scores, `additive` and `multiplicative`.

Bahdanau et al. 2015 and Luong et al. 2015 score each query against a linear map of each
key (``k_proj``) and return the weighted sum of the raw values, the context vector, with
no value or output projection. Only the score differs, so the keys, values, output, the
constructor's checks and the documented call live here once.
"""

from __future__ import annotations

import torch
from torch import nn

from nnblocks.parts.attention._base import KeyValueAttention
from nnblocks.parts.attention._checks import check_dropout, check_heads

__all__ = ["CONTEXT_VECTOR_DOC", "ContextVectorAttention"]

CONTEXT_VECTOR_DOC = """
    Call arguments:
        x: ``[B, Tq, dim]`` queries (the decoder state).
        context: ``[B, Tk, dim]`` keys and values (the encoder outputs), or None for
            self-attention over ``x``.
        mask: bool, True = may attend: ``[B, Tk]``, ``[B, Tq, Tk]`` or broadcastable to
            ``[B, H, Tq, Tk]``; with a cache it covers all keys.
        causal: query ``i`` attends keys ``<= i`` (offset by the cache).
        need_weights: also return the weights ``[B, H, Tq, Tk]``.
        cache: a dict (``{}`` at first); keeps the keys mapped by ``k_proj`` (the mapped
            context in cross-attention, computed once).

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or ``cache`` when asked. Query rows
        with no key to attend are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, or a mask that does not fit.
        SpecError: (construction) ``heads`` does not divide ``dim``, or a bad ``dropout``.
"""


class ContextVectorAttention(KeyValueAttention):
    """Keys through ``k_proj``, the raw input as values, the heads' output as it is.

    Subclasses call ``_setup_scores`` in ``__init__``, make ``k_proj`` and define
    ``_queries`` (and ``_attend`` unless the score is a scaled dot product).
    """

    k_proj: nn.Linear

    def _setup_scores(self, dim: int, heads: int, dropout: float, scale: float | None) -> int:
        """Check the options and set the head layout; return the head width ``dim // heads``.

        The subclass then makes its parameters, ``k_proj`` among them (in its own order:
        the order decides which random numbers initialise which weight).
        """
        check_heads(self.part_name, dim, heads)
        check_dropout(self.part_name, dropout)
        self._setup(dim, heads, heads, dim // heads, dropout, scale)
        return dim // heads

    def _keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split_heads(self.k_proj(src)), self._split_heads(src)  # [B, H, Tk, Dh]

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        return o  # [B, Tq, dim]: the context vector, no output projection
