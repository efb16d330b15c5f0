"""`multiplicative`: Luong attention, "general" score (Luong, Pham and Manning 2015)."""

from __future__ import annotations

import torch
from torch import nn

from nnblocks.parts._docs import shared_sections
from nnblocks.parts.attention._context_vector import CONTEXT_VECTOR_DOC, ContextVectorAttention
from nnblocks.registry import register

__all__ = ["MultiplicativeAttention"]


@register("attention", "multiplicative")
@shared_sections(CONTEXT_VECTOR_DOC)
class MultiplicativeAttention(ContextVectorAttention):
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
        self._setup_scores(dim, heads, dropout, 1.0)  # Luong's general score has no 1/sqrt(d)
        self.k_proj = nn.Linear(dim, dim, bias=False)  # W_a

    def _queries(self, x: torch.Tensor) -> torch.Tensor:
        return self._split_heads(x)
