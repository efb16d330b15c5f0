"""`additive`: Bahdanau attention (Bahdanau, Cho and Bengio 2015), for RNN decoders too."""

from __future__ import annotations

import math

import torch
from torch import nn

from nnblocks.parts.attention._base import AttendCall, KeyValueAttention
from nnblocks.parts.attention._checks import check_dropout, check_heads
from nnblocks.parts.attention._kernel import softmax_attention
from nnblocks.registry import register

__all__ = ["AdditiveAttention"]


@register("attention", "additive")
class AdditiveAttention(KeyValueAttention):
    """Additive (Bahdanau) attention: ``score(q, k) = v_a . tanh(W_a q + U_a k)``.

    Bahdanau et al. 2015, eq. 6: a one-layer network scores each query against each key;
    the output is the weighted sum of the raw values (the context vector ``c_i``), with no
    value or output projection. With ``heads > 1`` each head scores its own ``dim // heads``
    slice and reads the same slice of the values. Scoring forms a
    ``[B, H, Tq, Tk, dim // heads]`` tensor: meant for decoders that query one step at a
    time, not for long self-attention.

    Args:
        dim: width of queries, keys and values.
        heads: number of heads; must divide ``dim``.
        dropout: dropout on the attention weights, in training only.
        bias: whether ``U_a`` (the key projection) has a bias.

    Parameters: ``q_proj`` (``W_a``), ``k_proj`` (``U_a``), ``score`` (``v_a``, ``[H, Dh]``).

    Call arguments:
        x: ``[B, Tq, dim]`` queries (the decoder state).
        context: ``[B, Tk, dim]`` keys and values (the encoder outputs), or None for
            self-attention over ``x``.
        mask: bool, True = may attend: ``[B, Tk]``, ``[B, Tq, Tk]`` or broadcastable to
            ``[B, H, Tq, Tk]``; with a cache it covers all keys.
        causal: query ``i`` attends keys ``<= i`` (offset by the cache).
        need_weights: also return the weights ``[B, H, Tq, Tk]``.
        cache: a dict (``{}`` at first); keeps the projected keys (the projected context
            in cross-attention, computed once).

    Returns:
        ``out [B, Tq, dim]``, plus ``weights`` and/or ``cache`` when asked. Query rows
        with no key to attend are zeros.

    Raises:
        ShapeError: wrong rank or width of ``x``/``context``, or a mask that does not fit.
        SpecError: (construction) ``heads`` does not divide ``dim``, or a bad ``dropout``.

    Example:
        >>> import torch, nnblocks
        >>> attn = nnblocks.build("additive", "attention", dim=32)
        >>> state, encoded = torch.randn(2, 1, 32), torch.randn(2, 7, 32)
        >>> attn(state, context=encoded).shape
        torch.Size([2, 1, 32])
    """

    part_name = "additive"

    def __init__(self, dim: int, heads: int = 1, dropout: float = 0.0, bias: bool = True):
        super().__init__()
        check_heads(self.part_name, dim, heads)
        check_dropout(self.part_name, dropout)
        head_dim = dim // heads
        self._setup(dim, heads, heads, head_dim, dropout, None)
        self.q_proj = nn.Linear(dim, dim, bias=False)  # W_a
        self.k_proj = nn.Linear(dim, dim, bias=bias)  # U_a
        self.score = nn.Parameter(torch.empty(heads, head_dim))  # v_a
        nn.init.uniform_(self.score, -1 / math.sqrt(head_dim), 1 / math.sqrt(head_dim))

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.q_proj(x))

    def _keys_values(self, src: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self._split_heads(self.k_proj(src)), self._split_heads(src)

    def _output(self, o: torch.Tensor) -> torch.Tensor:
        return o

    def _attend(
        self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, call: AttendCall
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        allowed, _, valid = self._prepare_mask(q, k, call, fused=False)
        energy = torch.tanh(q[:, :, :, None, :] + k[:, :, None, :, :])  # [B, H, Tq, Tk, Dh]
        scores = torch.einsum("bhqkd,hd->bhqk", energy, self.score)  # [B, H, Tq, Tk]
        out, weights = softmax_attention(
            scores,
            v,
            attn_mask=allowed,
            valid=valid,
            dropout_p=self.dropout if self.training else 0.0,
        )
        return out, (weights if call.need_weights else None), valid
