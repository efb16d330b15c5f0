"""`additive`: Bahdanau attention (Bahdanau, Cho and Bengio 2015), for RNN decoders too."""

from __future__ import annotations

import math

import torch
from torch import nn

from nnblocks.parts._docs import shared_sections
from nnblocks.parts.attention._base import AttendCall
from nnblocks.parts.attention._context_vector import CONTEXT_VECTOR_DOC, ContextVectorAttention
from nnblocks.parts.attention._kernel import softmax_attention
from nnblocks.registry import register

__all__ = ["AdditiveAttention"]


@register("attention", "additive")
@shared_sections(CONTEXT_VECTOR_DOC)
class AdditiveAttention(ContextVectorAttention):
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
        head_dim = self._setup_scores(dim, heads, dropout, None)
        self.q_proj = nn.Linear(dim, dim, bias=False)  # W_a
        self.k_proj = nn.Linear(dim, dim, bias=bias)  # U_a
        self.score = nn.Parameter(torch.empty(heads, head_dim))  # v_a
        nn.init.uniform_(self.score, -1 / math.sqrt(head_dim), 1 / math.sqrt(head_dim))

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(self.q_proj(x))

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
