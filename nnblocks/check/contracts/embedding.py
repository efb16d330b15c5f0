"""The embedding contract: ``Part(dim, vocab_size, padding_idx=None, **options)``.

``forward(ids [B, T] long) -> [B, T, D]``; ``.weight`` is a ``[vocab_size, D]`` Parameter, so
an output layer can share it (weight tying, Press & Wolf 2017).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import Call, Context, Sizes, check, fail, max_diff

__all__ = ["CONTRACT"]


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {"dim": sizes.dim, "vocab_size": sizes.vocab_size}


def _vocab(ctx: Context) -> int:
    weight = getattr(ctx.part, "weight", None)
    return int(weight.shape[0]) if isinstance(weight, torch.Tensor) else ctx.sizes.vocab_size


def example(ctx: Context) -> Call:
    ids = torch.randint(1, _vocab(ctx), (ctx.B, ctx.T), device=ctx.device)
    ids[:, -1] = ids[0, 0]  # a repeated id: the same token must give the same vector
    return Call((ids,))


@check("shape")
def shape(ctx: Context) -> str:
    """ids [B, T] long -> [B, T, D]."""
    ids = ctx.example().args[0]
    with torch.no_grad():
        out = ctx.fresh()(ids)
    if not isinstance(out, torch.Tensor) or tuple(out.shape) != (ctx.B, ctx.T, ctx.D):
        fail(
            f"expected [B, T, D] = {[ctx.B, ctx.T, ctx.D]}, got {getattr(out, 'shape', type(out).__name__)}"
        )
    return f"{list(ids.shape)} -> {list(out.shape)}"


@check("weight")
def weight(ctx: Context) -> str:
    """`.weight` is a [vocab_size, D] Parameter (what an output layer ties to)."""
    w = getattr(ctx.part, "weight", None)
    if not isinstance(w, nn.Parameter):
        fail(f"`.weight` must be an nn.Parameter for weight tying; found {type(w).__name__}")
    if w.dim() != 2 or w.shape[1] != ctx.D:
        fail(f"`.weight` must be [vocab_size, D={ctx.D}]; found {list(w.shape)}")
    return f".weight {list(w.shape)}"


@check("lookup")
def lookup(ctx: Context) -> str:
    """A token's vector depends only on its id, not on its position or row."""
    module = ctx.fresh()
    ids = ctx.example().args[0]
    with torch.no_grad():
        out = module(ids)
        alone = module(ids[:, :1])
    if max_diff(out[:, -1], out[:1, 0].expand(ctx.B, -1)) > 1e-6:
        fail("the same id gives different vectors at different positions or rows")
    if max_diff(alone[:, 0], out[:, 0]) > 1e-6:
        fail("a token's vector depends on the rest of the sequence")
    return "each id maps to one vector"


@check("padding_idx")
def padding_idx(ctx: Context) -> str:
    """With padding_idx=0 the padding row gets no gradient."""
    module = ctx.variant(padding_idx=0).train()
    ids = ctx.example().args[0].clone()
    ids[:, 0] = 0
    module(ids).sum().backward()
    w = getattr(module, "weight", None)
    if not isinstance(w, torch.Tensor) or w.grad is None:
        fail("no gradient reaches `.weight`")
    if bool(w.grad[0].any()):
        fail("the padding row receives a gradient")
    return "the padding row gets no gradient"


CONTRACT = generic.float_contract(
    "embedding", shape, weight, lookup, padding_idx, defaults=defaults, example=example
)
