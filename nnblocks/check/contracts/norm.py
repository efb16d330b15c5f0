"""The norm contract: ``Part(dim, **options)``, ``forward(x)`` normalises over the last axis.

Two families, told apart by their buffers:

- per-position norms (LayerNorm, RMSNorm) normalise each position on its own: changing one
  position changes only that position, a positive scale of a position changes nothing, and
  at the default (identity) affine initialisation every output position has unit RMS (and
  zero mean when the norm centres, as LayerNorm does: Ba et al. 2016; RMSNorm does not
  centre: Zhang & Sennrich 2019). Train and eval mode agree.
- batch-statistics norms (BatchNorm, Ioffe & Szegedy 2015) hold ``running_mean`` and
  ``running_var``: in train mode each feature has zero mean and unit variance over the batch
  and positions and the running statistics move; in eval mode they stay fixed and each
  sample is normalised on its own.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import (
    Call,
    Context,
    Sizes,
    check,
    expect_close,
    expect_local_change,
    expect_shape_kept,
    fail,
    max_diff,
    skip,
)

__all__ = ["CONTRACT", "has_batch_statistics"]

_STATS = ("running_mean", "running_var")


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    return {"dim": sizes.dim}


def example(ctx: Context) -> Call:
    # Off-centre and scaled, so a norm that forgets to centre or to scale is seen.
    return Call((3.0 * ctx.randn(ctx.B, ctx.T, ctx.D) + 1.0,))


def has_batch_statistics(module: nn.Module) -> bool:
    """True when the module (or a child) keeps running statistics, as BatchNorm does."""
    return any(name.rsplit(".", 1)[-1] in _STATS for name, _ in module.named_buffers())


def _centres(ctx: Context) -> bool | None:
    """What the part's name promises: centring (layer), no centring (rms) or unknown."""
    name = ctx.label.lower()
    if "rms" in name:
        return False
    if "layer" in name:
        return True
    return None


@check("shape_any_rank")
def shape_any_rank(ctx: Context) -> str:
    """[B, D], [B, T, D] and [B, T, S, D] keep their shape and dtype."""
    module = ctx.fresh()
    shapes = [(ctx.B, ctx.D), (ctx.B, ctx.T, ctx.D), (ctx.B, 3, 4, ctx.D)]
    for shape in shapes:
        expect_shape_kept(module, ctx.randn(*shape))
    return f"shapes {', '.join(str(list(s)) for s in shapes)} kept"


@check("statistics")
def statistics(ctx: Context) -> str:
    """Outputs have the statistics the norm promises, over the right axis (see module doc)."""
    if has_batch_statistics(ctx.part):
        return _batch_statistics(ctx)
    return _position_statistics(ctx)


def _position_statistics(ctx: Context) -> str:
    module = ctx.fresh()
    x = ctx.example().args[0]
    with torch.no_grad():
        out = module(x)
        # changing one position changes only that position: statistics over the last axis
        new = 5.0 * ctx.randn(ctx.D) - 2.0
        what = "changing one position changed other positions"
        expect_local_change(module, x, out, (0, 1), new, 1e-5, what)
        # a positive scale per position divides out
        scales = 0.5 + 1.5 * torch.rand(ctx.B, ctx.T, 1, device=ctx.device)
        expect_close(module(x * scales), out, 1e-4, "scaling a position changed its output")
        train = ctx.fresh(train=True)(x)
    expect_close(train, out, 1e-5, "train and eval mode give different outputs")
    rms = out.pow(2).mean(-1).sqrt()
    mean = out.mean(-1)
    if max_diff(rms, torch.ones_like(rms)) > 1e-2:
        fail(
            f"output positions do not have unit RMS (found {float(rms.min()):.3f}..{float(rms.max()):.3f}) "
            "at the default affine initialisation: not a normalisation over the last axis"
        )
    centred = float(mean.abs().max()) < 1e-4
    promised = _centres(ctx)
    if promised is True and not centred:
        fail(f"a layer norm must centre each position; largest mean {float(mean.abs().max()):.3g}")
    if promised is False and centred:
        fail("an RMS norm must not centre the input, but every output position has zero mean")
    kind = (
        "zero mean and unit variance (LayerNorm)" if centred else "unit RMS, not centred (RMSNorm)"
    )
    return f"per position over the last axis: {kind}; scale invariant; train == eval"


def _batch_statistics(ctx: Context) -> str:
    module = ctx.fresh(train=True)
    x = ctx.example().args[0]
    before = {k: v.clone() for k, v in module.named_buffers()}
    with torch.no_grad():
        out = module(x)
    flat = out.reshape(-1, ctx.D)  # [B*T, D]: statistics per feature over batch and positions
    mean, var = flat.mean(0), flat.var(0, unbiased=False)
    if float(mean.abs().max()) > 1e-3 or float((var - 1).abs().max()) > 1e-2:
        fail(
            "in train mode each feature must have zero mean and unit variance over the batch "
            f"(found |mean| <= {float(mean.abs().max()):.3g}, variance "
            f"{float(var.min()):.3f}..{float(var.max()):.3f})"
        )
    stats = {k: v for k, v in module.named_buffers() if k.rsplit(".", 1)[-1] in _STATS}
    unchanged = [k for k, v in stats.items() if torch.equal(v, before[k])]
    if unchanged:
        fail(f"a train-mode forward did not update the running statistics {unchanged}")
    module.eval()
    frozen = {k: v.clone() for k, v in stats.items()}
    with torch.no_grad():
        evaluated = module(x)
        alone = module(x[:1])
    moved = [k for k, v in stats.items() if not torch.equal(v, frozen[k])]
    if moved:
        fail(f"an eval-mode forward changed the running statistics {moved}")
    if max_diff(evaluated, out) < 1e-3:
        fail("eval mode gives the train-mode (batch statistics) output: running statistics unused")
    expect_close(alone, evaluated[:1], 1e-5, "in eval mode a sample's output depends on the batch")
    return (
        "train: zero mean, unit variance per feature over the batch, running statistics "
        "updated; eval: running statistics used and left unchanged, samples independent"
    )


@check("channels_first")
def channels_first(ctx: Context) -> str:
    """With channels_first=True, [B, C, H, W] gives the channels-last result, permuted."""
    module = ctx.variant(channels_first=True)
    last = ctx.variant(channels_first=False)
    missing, unexpected = module.load_state_dict(last.state_dict(), strict=False)
    if missing or unexpected:
        skip(f"channels_first changes the parameters ({missing or unexpected}); not compared")
    x = 3.0 * ctx.randn(ctx.B, ctx.D, 3, 4) + 1.0
    with torch.no_grad():
        out = module(x)
        expected = last(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
    expect_close(out, expected, 1e-5, "channels_first output differs from the channels-last one")
    return "[B, C, H, W] normalised over C, as channels-last"


CONTRACT = generic.float_contract(
    "norm", shape_any_rank, statistics, channels_first, defaults=defaults, example=example
)
