"""The activation contract: ``Part(**options)``, an element-wise function of any shape."""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import Call, Context, Contract, Sizes, check, expect_close, fail

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
    with torch.no_grad():
        for s in shapes:
            x = ctx.randn(*s)
            out = module(x)
            if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
                fail(f"input {list(s)} float32 gave {getattr(out, 'shape', type(out).__name__)}")
    return f"{len(shapes)} shapes kept"


@check("element_wise")
def element_wise(ctx: Context) -> str:
    """Changing one element changes only that element; equal inputs give equal outputs."""
    module = ctx.fresh()
    x = ctx.example().args[0]
    with torch.no_grad():
        base = module(x)
        x2 = x.clone()
        x2[0, 1, 2] += 1.5
        out = module(x2)
        keep = torch.ones_like(x, dtype=torch.bool)
        keep[0, 1, 2] = False
        expect_close(out[keep], base[keep], 1e-6, "changing one element changed others")
        flat = module(x.reshape(-1)).reshape(x.shape)
    expect_close(flat, base, 1e-6, "the output depends on the input's shape")
    return "element-wise"


CONTRACT = Contract(
    kind="activation",
    checks=(shape, element_wise, *generic.float_checks()),
    defaults=defaults,
    example=example,
)
