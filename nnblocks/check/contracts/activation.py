"""The activation contract: ``Part(**options)``, an element-wise function of any shape."""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import (
    Call,
    Context,
    Sizes,
    check,
    expect_close,
    expect_local_change,
    expect_shape_kept,
)

__all__ = ["CONTRACT"]


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {}


def example(ctx: Context) -> Call:
    return Call((2.0 * ctx.randn(ctx.B, ctx.T, ctx.D),))


@check("shape")
def shape(ctx: Context) -> str:
    """Any shape is kept, with its dtype: [D], [B, D], [B, T, D], [B, C, H, W]."""
    module = ctx.fresh()
    shapes = [(ctx.D,), (ctx.B, ctx.D), (ctx.B, ctx.T, ctx.D), (ctx.B, 3, 4, 5)]
    for s in shapes:
        expect_shape_kept(module, ctx.randn(*s))
    return f"{len(shapes)} shapes kept"


@check("element_wise")
def element_wise(ctx: Context) -> str:
    """Changing one element changes only that element; equal inputs give equal outputs."""
    module = ctx.fresh()
    x = ctx.example().args[0]
    with torch.no_grad():
        base = module(x)
        index = (0, 1, 2)
        expect_local_change(
            module, x, base, index, x[index] + 1.5, 1e-6, "changing one element changed others"
        )
        flat = module(x.reshape(-1)).reshape(x.shape)
    expect_close(flat, base, 1e-6, "the output depends on the input's shape")
    return "element-wise"


CONTRACT = generic.float_contract(
    "activation", shape, element_wise, defaults=defaults, example=example
)
