"""A correct plain attention and copies of it with one planted fault each.

`PlainAttention` is written from the definition (matmul, softmax, matmul; Vaswani et al.
2017), independently of nnblocks' own attention parts, and keeps the whole contract: masks,
causal flag, cache, need_weights, zeros for fully masked rows, ShapeError. Each broken
subclass overrides one small method, so it differs from the correct part by exactly the
fault the kit must catch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.errors import ShapeError


class PlainAttention(nn.Module):
    """Multi-head attention from plain matmul and softmax (correct)."""

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim={dim} is not divisible by heads={heads}")
        self.dim, self.heads = dim, heads
        self.q = nn.Linear(dim, dim, bias=bias)
        self.k = nn.Linear(dim, dim, bias=bias)
        self.v = nn.Linear(dim, dim, bias=bias)
        self.o = nn.Linear(dim, dim, bias=bias)

    # ---- the small steps the broken parts override ----

    def allowed(self, mask, causal, B, Tq, Tk, offset, device):
        """[B, 1 or H, Tq, Tk] bool, True = may attend."""
        allowed = torch.ones(B, 1, Tq, Tk, dtype=torch.bool, device=device)
        if mask is not None:
            if mask.dim() == 2:
                allowed = allowed & mask[:, None, None, :]
            elif mask.dim() == 3:
                allowed = allowed & mask[:, None]
            else:
                allowed = allowed & mask
        if causal:
            q_pos = torch.arange(Tq, device=device)[:, None] + offset
            allowed = allowed & (torch.arange(Tk, device=device)[None, :] <= q_pos)
        return allowed

    def softmax(self, scores, allowed):
        scores = scores.masked_fill(~allowed, float("-inf"))
        any_key = allowed.any(-1, keepdim=True)
        # A row with no key would be softmax of all -inf = NaN: give it zeros instead.
        weights = torch.softmax(scores.masked_fill(~any_key, 0.0), dim=-1)
        return weights * any_key

    def mix(self, x):
        return x

    # ---- the call ----

    def _check(self, x, context, mask):
        if x.dim() != 3 or x.shape[-1] != self.dim:
            raise ShapeError(f"PlainAttention: x must be [B, T, {self.dim}]; got {list(x.shape)}")
        if context is not None and (context.dim() != 3 or context.shape[-1] != self.dim):
            raise ShapeError(
                f"PlainAttention: context must be [B, S, {self.dim}]; got {list(context.shape)}"
            )
        if mask is not None and mask.dim() not in (2, 3, 4):
            raise ShapeError(f"PlainAttention: mask must be 2-D, 3-D or 4-D; got {mask.dim()}-D")

    def _split(self, t):
        B, T, _ = t.shape
        return t.view(B, T, self.heads, self.dim // self.heads).transpose(1, 2)  # [B, H, T, Dh]

    def forward(self, x, context=None, mask=None, causal=False, cache=None, need_weights=False):
        self._check(x, context, mask)
        x = self.mix(x)
        B, Tq, _ = x.shape
        q = self._split(self.q(x))
        offset = 0
        if context is None:
            k, v = self._split(self.k(x)), self._split(self.v(x))
            if cache is not None and "k" in cache:
                offset = cache["k"].shape[2]
                k, v = torch.cat([cache["k"], k], 2), torch.cat([cache["v"], v], 2)
        elif cache is not None and "k" in cache:
            k, v = cache["k"], cache["v"]  # the projected context, computed once
        else:
            k, v = self._split(self.k(context)), self._split(self.v(context))
        Tk = k.shape[2]
        if mask is not None and mask.dim() == 2 and mask.shape[1] != Tk:
            raise ShapeError(
                f"PlainAttention: a 2-D mask must be [B, {Tk}]; got {list(mask.shape)}"
            )
        allowed = self.allowed(mask, causal, B, Tq, Tk, offset, x.device)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [B, H, Tq, Tk]
        weights = self.softmax(scores, allowed)
        out = (weights @ v).transpose(1, 2).reshape(B, Tq, self.dim)
        out = self.o(out) * allowed.any(-1).any(1)[..., None]  # fully masked rows -> zeros
        result = (out,)
        if need_weights:
            result += (weights,)
        if cache is not None:
            result += ({"k": k, "v": v},)
        return result[0] if len(result) == 1 else result


class PeeksAtFuture(PlainAttention):
    """Fault: the causal mask lets query i see key i + 1."""

    def allowed(self, mask, causal, B, Tq, Tk, offset, device):
        return super().allowed(mask, causal, B, Tq, Tk, offset + 1, device)


class IgnoresPadding(PlainAttention):
    """Fault: the mask is dropped (the causal flag still works)."""

    def allowed(self, mask, causal, B, Tq, Tk, offset, device):
        return super().allowed(None, causal, B, Tq, Tk, offset, device)


class DeadParameter(PlainAttention):
    """Fault: a gate parameter that is used only through .detach(), so it never learns."""

    def __init__(self, dim: int, heads: int, bias: bool = True):
        super().__init__(dim, heads, bias)
        self.gate = nn.Parameter(torch.ones(dim))

    def mix(self, x):
        return x * self.gate.detach()


class MixesBatch(PlainAttention):
    """Fault: each row receives a little of the batch mean (as a careless norm would)."""

    def mix(self, x):
        return x + 0.1 * x.mean(0, keepdim=True)


class ScalesInputInPlace(PlainAttention):
    """Fault: scales its input in place, which the block then adds back as the residual."""

    def mix(self, x):
        return x.mul_(0.5) if not x.requires_grad else x * 0.5


class NaNOnFullyMasked(PlainAttention):
    """Fault: the textbook masked softmax, which gives NaN for a row with no key."""

    def softmax(self, scores, allowed):
        return torch.softmax(scores.masked_fill(~allowed, float("-inf")), dim=-1)


class ComputesInFloat32(PlainAttention):
    """Fault: silently computes in float32 and returns float32, whatever it is given."""

    def forward(self, x, context=None, mask=None, causal=False, cache=None, need_weights=False):
        dtype = self.q.weight.dtype
        self.float()
        try:
            return super().forward(
                x.float(),
                None if context is None else context.float(),
                mask,
                causal,
                cache,
                need_weights,
            )
        finally:
            self.to(dtype)


class ComputesInBfloat16(PlainAttention):
    """Fault: computes the attention in bfloat16 and casts back, losing precision silently."""

    def softmax(self, scores, allowed):
        return super().softmax(scores.bfloat16(), allowed).to(scores.dtype)


class ForgetsCausalWithCache(PlainAttention):
    """Fault: with a cache, the causal mask ignores the cached length (step-by-step differs)."""

    def allowed(self, mask, causal, B, Tq, Tk, offset, device):
        return super().allowed(mask, causal, B, Tq, Tk, 0, device)


class RaisesRuntimeError(PlainAttention):
    """Fault: wrong shapes reach the matmul and raise a bare RuntimeError, not ShapeError."""

    def _check(self, x, context, mask):
        return None


class CrashesOnCross(PlainAttention):
    """Fault: cross-attention crashes (the kit must record it, not crash)."""

    def forward(self, x, context=None, **kwargs):
        if context is not None:
            raise RuntimeError("cross-attention not implemented")
        return super().forward(x, **kwargs)


def plain_attention_reference(q, k, v, allowed):
    """Softmax attention in float64 (a helper for tests)."""
    scores = (q.double() @ k.double().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    return F.softmax(scores.masked_fill(~allowed, float("-inf")), -1) @ v.double()
