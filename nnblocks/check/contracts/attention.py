"""The attention contract (docs/interfaces.md, `nnblocks.parts.attention`), as checks.

``part = Part(dim, heads, **options)``; ``part(x, context=None, mask=None, causal=False)``
returns ``[B, Tq, D]``; optional ``cache=`` and ``need_weights=`` capabilities are detected
from the signature and skipped when absent. Masks are boolean, True = may attend.
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import attention_slow, generic
from nnblocks.check.contracts.base import (
    Call,
    Context,
    Contract,
    Sizes,
    check,
    expect_close,
    fail,
    skip,
    warn,
)
from nnblocks.check.contracts.sequence import TOL, Caller, sequence_checks
from nnblocks.errors import NNBlocksError, ShapeError

__all__ = ["CONTRACT", "CALLER", "example"]

CALLER = Caller(cross_mask="mask", zero_rows=True)


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {"dim": sizes.dim, "heads": sizes.heads}


def example(ctx: Context) -> Call:
    """Causal self-attention with a padding mask: the call a decoder makes."""
    mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
    mask[0, -1] = False
    return Call((ctx.randn(ctx.B, ctx.T, ctx.D),), {"mask": mask, "causal": True})


@check("signature")
def signature(ctx: Context) -> str:
    """forward takes x, context=, mask= and causal= (the attention call signature)."""
    missing = [n for n in ("context", "mask", "causal") if not ctx.accepts(n)]
    if missing:
        fail(
            f"forward must accept {', '.join(f'`{n}=`' for n in missing)}: every attention is "
            "called as part(x, context=None, mask=None, causal=False)"
        )
    caps = [n for n in ("cache", "need_weights") if ctx.accepts(n)]
    return f"call signature kept; capabilities: {', '.join(caps) or 'none'}"


@check("need_weights")
def need_weights(ctx: Context) -> str:
    """need_weights=True returns weights [B, H, Tq, Tk]: rows sum to 1, hidden keys get 0."""
    if not ctx.accepts("need_weights"):
        skip("the part takes no `need_weights=`")
    module = ctx.fresh()
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
    mask[0, -2:] = False
    with torch.no_grad():
        result = module(x, mask=mask, causal=True, need_weights=True)
        plain = CALLER.out(module, x, mask=mask, causal=True)
    if not (isinstance(result, tuple) and len(result) == 2):
        fail(f"need_weights=True must return (out, weights); received {type(result).__name__}")
    out, weights = result
    B, T = ctx.B, ctx.T
    if weights.dim() != 4 or (weights.shape[0], weights.shape[2], weights.shape[3]) != (B, T, T):
        fail(f"weights must be [B, H, Tq, Tk] = [{B}, H, {T}, {T}]; got {list(weights.shape)}")
    expect_close(out, plain, TOL, "the output with need_weights=True differs from the plain call")
    causal = torch.ones(T, T, dtype=torch.bool, device=ctx.device).tril()
    allowed = (mask[:, None, :] & causal)[:, None]  # [B, 1, T, T]
    hidden = weights.masked_select(~allowed.expand_as(weights))
    if hidden.numel() and float(hidden.abs().max()) > 0:
        fail(f"hidden keys (masked or future) get weight up to {float(hidden.abs().max()):.3g}")
    sums = weights.sum(-1)
    expect_close(sums, torch.ones_like(sums), TOL, "attention weights rows do not sum to 1")
    return f"weights {list(weights.shape)}; rows sum to 1; masked and future keys get 0"


@check("shape_errors")
def shape_errors(ctx: Context) -> str:
    """Inputs of the wrong rank or width raise ShapeError naming the part."""
    module = ctx.fresh()
    B, T, S, D = ctx.B, ctx.T, ctx.S, ctx.D
    x = ctx.randn(B, T, D)
    cases = {
        "x of rank 2 [T, D]": lambda: module(x[0]),
        "x of width D+1": lambda: module(ctx.randn(B, T, D + 1)),
        "context of width D+1": lambda: module(x, context=ctx.randn(B, S, D + 1)),
        "a 1-D mask": lambda: module(x, mask=torch.ones(T, dtype=torch.bool, device=ctx.device)),
        "a 2-D mask of the wrong key length": lambda: module(
            x, mask=torch.ones(B, T + 1, dtype=torch.bool, device=ctx.device)
        ),
    }
    wrong = []
    with torch.no_grad():
        for label, call in cases.items():
            try:
                call()
            except ShapeError:
                continue
            except NNBlocksError as exc:
                wrong.append(f"{label}: raised {type(exc).__name__}, not ShapeError")
            except Exception as exc:
                wrong.append(f"{label}: raised {type(exc).__name__} ({str(exc)[:60]})")
            else:
                wrong.append(f"{label}: accepted")
    if wrong:
        # A third-party part that fails loudly with torch's own error still keeps the
        # contract's shapes; naming the part is nnblocks' convention: warn, not fail.
        warn("expected nnblocks.ShapeError for " + "; ".join(wrong))
    return f"{len(cases)} malformed calls raise ShapeError"


CONTRACT = Contract(
    kind="attention",
    checks=(
        signature,
        *sequence_checks(CALLER),
        need_weights,
        *generic.float_checks(),
        shape_errors,
        *attention_slow.CHECKS,
    ),
    defaults=defaults,
    example=example,
)
