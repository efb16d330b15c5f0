"""A new attention in one small file: query-key normalised ("cosine") attention.

Henry et al. 2020, "Query-Key Normalization for Transformers": scores are cosine
similarities times a learned temperature instead of dot products over sqrt(d).

    nnblocks --plugin examples/cosine_attention.py check attention:cosine
"""

import torch
import torch.nn.functional as F
from torch import nn

import nnblocks


@nnblocks.register("attention", "cosine")
class CosineAttention(nn.Module):
    """Multi-head attention whose scores are scaled cosine similarities."""

    def __init__(self, dim, heads, init_scale=10.0):
        super().__init__()
        self.heads = heads
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, 2 * dim)
        self.out = nn.Linear(dim, dim, bias=False)  # so fully masked rows stay exactly zero
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))

    def forward(self, x, context=None, mask=None, causal=False):
        kv = x if context is None else context
        self._check(x, kv, mask)
        B, Tq, D = x.shape
        q = self.q(x)
        k, v = self.kv(kv).chunk(2, dim=-1)
        q, k, v = (t.view(B, -1, self.heads, D // self.heads).transpose(1, 2) for t in (q, k, v))
        scores = self.scale * F.normalize(q, dim=-1) @ F.normalize(k, dim=-1).transpose(-2, -1)
        allowed = torch.ones(scores.shape[-2:], dtype=torch.bool, device=x.device)
        if causal:
            allowed = allowed.tril()
        if mask is not None:  # [B, Tk] per key, [B, Tq, Tk], or [B, H, Tq, Tk]
            allowed = allowed & (
                mask.view(B, 1, 1, -1)
                if mask.dim() == 2
                else mask.unsqueeze(1)
                if mask.dim() == 3
                else mask
            )
        scores = scores.masked_fill(~allowed, float("-inf"))
        weights = torch.softmax(scores, dim=-1).nan_to_num(0.0)  # fully masked rows -> 0
        return self.out((weights @ v).transpose(1, 2).reshape(B, Tq, D))

    def _check(self, x, kv, mask):
        # The contract asks for an nnblocks ShapeError naming the part, not a torch error.
        dim = self.q.in_features
        if x.dim() != 3 or kv.dim() != 3 or x.shape[-1] != dim or kv.shape[-1] != dim:
            raise nnblocks.ShapeError(
                f"attention `cosine`: expected x and context [B, T, {dim}]. "
                f"Received: {tuple(x.shape)} and {tuple(kv.shape)}"
            )
        if mask is not None and (mask.dim() not in (2, 3, 4) or mask.shape[-1] != kv.shape[1]):
            raise nnblocks.ShapeError(
                f"attention `cosine`: expected a 2-D, 3-D or 4-D mask over {kv.shape[1]} keys. "
                f"Received: mask of shape {tuple(mask.shape)}"
            )
