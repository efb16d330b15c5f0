"""The regularization contract: train-time noise (dropout, drop-path), identity in eval mode.

``Part(p=0.1)``, ``forward(x) -> same shape``. In eval mode the part must return its input
unchanged; in train mode it must keep the expectation (inverted dropout scales the kept
values by 1 / (1 - p), Srivastava et al. 2014; drop-path does it per sample, Huang et al. 2016).
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import Call, Context, Sizes, check, fail

__all__ = ["CONTRACT"]


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {}


def example(ctx: Context) -> Call:
    return Call((ctx.randn(ctx.B, ctx.T, ctx.D),))


@check("eval_identity")
def eval_identity(ctx: Context) -> str:
    """In eval mode the output is the input, unchanged."""
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    with torch.no_grad():
        out = ctx.fresh()(x)
    if not isinstance(out, torch.Tensor) or not torch.equal(out, x):
        fail("eval mode must return the input unchanged")
    return "identity in eval mode"


@check("train_expectation")
def train_expectation(ctx: Context) -> str:
    """In train mode the shape is kept and the mean is preserved (inverted scaling)."""
    module = ctx.fresh(train=True)
    x = torch.ones(256, 16, 8, device=ctx.device)
    with torch.no_grad():
        out = module(x)
    if out.shape != x.shape or out.dtype != x.dtype:
        fail(f"train mode changed the shape or dtype: {list(out.shape)} {out.dtype}")
    mean = float(out.mean())
    # 256 samples: even per-sample drop-path with p = 0.5 keeps the mean within 0.2 (6 sigma).
    if abs(mean - 1.0) > 0.2:
        fail(f"train mode changed the mean of ones to {mean:.3f}: kept values are not rescaled")
    changed = not torch.equal(out, x)
    return f"mean preserved ({mean:.3f}); " + ("noise applied" if changed else "no noise (p = 0?)")


CONTRACT = generic.float_contract(
    "regularization", eval_identity, train_expectation, defaults=defaults, example=example
)
