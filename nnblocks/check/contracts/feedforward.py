"""The feedforward contract: ``Part(dim, hidden=None, activation="gelu", dropout=0.0, bias=True)``.

``forward(x [B, T, D]) -> [B, T, D]``, applied to each position on its own (the
position-wise network of Vaswani et al. 2017): changing one position changes only that
position's output.
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import (
    Call,
    Context,
    Sizes,
    check,
    expect_local_change,
    expect_shape_kept,
    fail,
)

__all__ = ["CONTRACT", "position_wise"]


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {"dim": sizes.dim}


def example(ctx: Context) -> Call:
    return Call((ctx.randn(ctx.B, ctx.T, ctx.D),))


@check("shape")
def shape(ctx: Context) -> str:
    """[B, T, D] -> [B, T, D] in the input's dtype."""
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    expect_shape_kept(ctx.fresh(), x)
    return f"{list(x.shape)} kept"


@check("position_wise")
def position_wise(ctx: Context) -> str:
    """Changing one position (of one row) changes only that position's output."""
    module = ctx.fresh()
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    with torch.no_grad():
        base = module(x)
        for b, t in ((0, 0), (ctx.B - 1, ctx.T // 2), (0, ctx.T - 1)):
            what = f"changing position ({b}, {t}) changed others"
            out = expect_local_change(module, x, base, (b, t), ctx.randn(ctx.D), 1e-5, what)
            if torch.equal(out[b, t], base[b, t]):
                fail(f"changing position ({b}, {t}) did not change its own output")
    return "each position is transformed on its own"


CONTRACT = generic.float_contract(
    "feedforward", shape, position_wise, defaults=defaults, example=example
)
