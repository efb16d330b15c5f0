"""The block contract: one transformer layer, checked with the attention checks.

``Part(dim, heads, attention="mha", cross_attention=None, ...)``;
``block(x, mask=None, causal=False, context=None, context_mask=None, cache=None)`` returns
``x`` (or ``(x, cache)`` with a cache). A block is attention plus a residual, a norm and a
feedforward, so the same leakage, mask and cache checks apply; cross-attention checks run
only when the block was built with ``cross_attention``, and fully masked rows need only be
finite (the residual passes the input through).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import Call, Context, Sizes, check, fail
from nnblocks.check.contracts.sequence import Caller, sequence_checks

__all__ = ["CONTRACT", "CALLER"]


def _has_cross(module: nn.Module) -> bool:
    return getattr(module, "cross_attention", None) is not None


CALLER = Caller(cross_mask="context_mask", zero_rows=False, has_cross=_has_cross)


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {"dim": sizes.dim, "heads": sizes.heads}


def example(ctx: Context) -> Call:
    """A decoder layer's call: causal, with padding, and the context when it has cross-attention."""
    mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
    mask[0, -1] = False
    kwargs: dict[str, Any] = {"mask": mask, "causal": True}
    if _has_cross(ctx.part):
        kwargs["context"] = ctx.randn(ctx.B, ctx.S, ctx.D)
    return Call((ctx.randn(ctx.B, ctx.T, ctx.D),), kwargs)


@check("signature")
def signature(ctx: Context) -> str:
    """forward takes mask=, causal=, context= and context_mask= (the block call signature)."""
    names = ("mask", "causal", "context", "context_mask")
    missing = [n for n in names if not ctx.accepts(n)]
    if missing:
        fail(
            f"forward must accept {', '.join(f'`{n}=`' for n in missing)}: a block is called "
            "as block(x, mask=None, causal=False, context=None, context_mask=None)"
        )
    kind = "with cross-attention" if _has_cross(ctx.part) else "self-attention only"
    return f"call signature kept ({kind}; cache: {'yes' if ctx.accepts('cache') else 'no'})"


CONTRACT = generic.float_contract(
    "block", signature, *sequence_checks(CALLER), defaults=defaults, example=example
)
