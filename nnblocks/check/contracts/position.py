"""The position contract: absolute schemes add to ``x``; relative ones adjust attention.

- Absolute (``relative = False``): ``Part(dim, max_len=...)``,
  ``forward(x [B, T, D], offset=0) -> [B, T, D]``. ``offset`` is the position of ``x[:, 0]``:
  positions 0..T+k-1 in one call must equal the same positions fed later with ``offset=k``
  (what a decoder does step by step).
- Relative (``relative = True``, rotary: Su et al. 2021; ALiBi: Press et al. 2022):
  ``Part(dim=head_dim, heads=heads)``, ``adjust(q, k, q_pos, k_pos) -> (q, k, bias)``. The
  attention scores ``q k^T + bias`` may depend only on ``q_pos - k_pos``: shifting every
  position by the same amount must change nothing, and an ALiBi-like bias must be constant
  along each diagonal.
"""

from __future__ import annotations

from typing import Any

import torch

from nnblocks.check.contracts import generic
from nnblocks.check.contracts.base import (
    Call,
    Check,
    Context,
    Contract,
    Sizes,
    check,
    expect_close,
    expect_shape_kept,
    fail,
    max_diff,
    scale_of,
    skip,
)

__all__ = ["CONTRACT", "is_relative"]

MAX_LEN = 64


def is_relative(part: Any) -> bool:
    """True for a relative scheme (class attribute ``relative = True``)."""
    return bool(getattr(part, "relative", False))


def defaults(sizes: Sizes, part: Any) -> dict[str, Any]:
    if is_relative(part):
        return {"dim": sizes.dim // sizes.heads, "heads": sizes.heads, "max_len": MAX_LEN}
    return {"dim": sizes.dim, "max_len": MAX_LEN}


def _broadcasts(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    # by hand: torch.broadcast_shapes imports sympy on first use (seconds)
    if len(shape) > len(target):
        return False
    return all(a in (1, b) for a, b in zip(reversed(shape), reversed(target)))


def _head_dim(ctx: Context) -> int:
    return ctx.D // ctx.H


def _qk(
    ctx: Context, tq: int, tk: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, ...]:
    dh = _head_dim(ctx)
    q = ctx.randn(ctx.B, ctx.H, tq, dh, dtype=dtype)
    k = ctx.randn(ctx.B, ctx.H, tk, dh, dtype=dtype)
    return q, k


def _positions(ctx: Context, tq: int, tk: int, shift: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    # Queries are the last tq of tk positions, as during cached decoding.
    k_pos = torch.arange(tk, device=ctx.device) + shift
    return k_pos[tk - tq :], k_pos


class _Adjust(torch.nn.Module):
    """Wraps ``adjust`` as a module returning the scores, so generic checks can call it."""

    relative = True

    def __init__(self, part: torch.nn.Module):
        super().__init__()
        self.part = part

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
    ) -> torch.Tensor:
        return scores(self.part, q, k, q_pos, k_pos)


def scores(
    part: Any, q: torch.Tensor, k: torch.Tensor, q_pos: torch.Tensor, k_pos: torch.Tensor
) -> torch.Tensor:
    """``q' k'^T + bias`` [B, H, Tq, Tk] after the part's ``adjust``."""
    result = part.adjust(q, k, q_pos, k_pos)
    if not (isinstance(result, tuple) and len(result) == 3):
        fail(f"adjust must return (q, k, bias); received {type(result).__name__}")
    q2, k2, bias = result
    out = q2 @ k2.transpose(-1, -2)
    return out if bias is None else out + bias


def example(ctx: Context) -> Call:
    if is_relative(ctx.part):
        q, k = _qk(ctx, ctx.T, ctx.T)
        q_pos, k_pos = _positions(ctx, ctx.T, ctx.T)
        return Call((q, k, q_pos, k_pos))
    return Call((ctx.randn(ctx.B, ctx.T, ctx.D),))


# ---- absolute ----


@check("shape")
def shape(ctx: Context) -> str:
    """Absolute: [B, T, D] -> [B, T, D]. Relative: adjust keeps q and k; bias broadcasts."""
    module = ctx.fresh()
    if is_relative(module):
        q, k = _qk(ctx, 3, ctx.T)
        q_pos, k_pos = _positions(ctx, 3, ctx.T)
        with torch.no_grad():
            result = module.adjust(q, k, q_pos, k_pos)  # type: ignore[operator]
        if not (isinstance(result, tuple) and len(result) == 3):
            fail(f"adjust must return (q, k, bias); received {type(result).__name__}")
        q2, k2, bias = result
        if q2.shape != q.shape or k2.shape != k.shape or q2.dtype != q.dtype or k2.dtype != k.dtype:
            fail(
                f"adjust changed q/k: {list(q.shape)} -> {list(q2.shape)}, {list(k.shape)} -> {list(k2.shape)}"
            )
        if bias is not None:
            if not _broadcasts(tuple(bias.shape), (ctx.B, ctx.H, 3, ctx.T)):
                fail(
                    f"bias {list(bias.shape)} does not broadcast to [B, H, Tq, Tk] = {[ctx.B, ctx.H, 3, ctx.T]}"
                )
            if not bias.is_floating_point():
                fail(f"bias must be a float tensor; got {bias.dtype}")
        what = "no bias" if bias is None else f"bias {list(bias.shape)}"
        return f"adjust keeps q {list(q.shape)} and k {list(k.shape)}; {what}"
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    expect_shape_kept(module, x)
    return f"{list(x.shape)} kept"


@check("offset")
def offset(ctx: Context) -> str:
    """Absolute: positions k.. fed with offset=k equal positions k.. of one longer call."""
    module = ctx.fresh()
    if is_relative(module):
        skip("relative scheme: positions are passed to adjust explicitly")
    x = ctx.randn(ctx.B, ctx.T + 4, ctx.D)
    with torch.no_grad():
        full = module(x)
        for k in (1, 4):
            part = module(x[:, k:], offset=k)
            expect_close(part, full[:, k:], 1e-5, f"offset={k} disagrees with the longer call")
        step = module(x[:, -1:], offset=ctx.T + 3)
    expect_close(step, full[:, -1:], 1e-5, "a single position fed with its offset disagrees")
    return "offset=k gives positions k.. of a longer call"


@check("encodes_position")
def encodes_position(ctx: Context) -> str:
    """The same vector at every position comes out different at each position."""
    module = ctx.fresh()
    if is_relative(module):
        q = ctx.randn(1, ctx.H, 1, _head_dim(ctx)).expand(ctx.B, ctx.H, ctx.T, -1)
        q_pos, k_pos = _positions(ctx, ctx.T, ctx.T)
        with torch.no_grad():
            s = scores(module, q, q, q_pos, k_pos)  # identical content at every position
        if (
            max_diff(s[..., 1:, 0], s[..., :-1, 0]) < 1e-6
            and max_diff(s[..., 0, 1:], s[..., 0, :-1]) < 1e-6
        ):
            fail("scores do not depend on positions: the scheme has no effect")
        return "scores depend on relative position"
    x = ctx.randn(1, 1, ctx.D).expand(ctx.B, ctx.T, ctx.D).contiguous()
    with torch.no_grad():
        out = module(x)
    if torch.equal(out, x):
        skip("adds nothing (a `none` position scheme)")
    if max_diff(out[:, 1:], out[:, :-1]) < 1e-6:
        fail("identical inputs come out identical at every position: no position information")
    return "identical inputs differ by position after the scheme"


# ---- relative ----


@check("shift_invariance")
def shift_invariance(ctx: Context) -> str:
    """Relative: scores q k^T + bias are unchanged when every position shifts by s."""
    module = ctx.fresh()
    if not is_relative(module):
        skip("absolute scheme")
    q, k = _qk(ctx, 3, ctx.T)
    with torch.no_grad():
        base = scores(module, q, k, *_positions(ctx, 3, ctx.T))
        for s in (1, 5, 37):
            moved = scores(module, q, k, *_positions(ctx, 3, ctx.T, shift=s))
            expect_close(moved, base, 1e-4, f"shifting all positions by {s} changed the scores")
    return "scores depend only on q_pos - k_pos (shifts 1, 5, 37)"


@check("bias_by_distance")
def bias_by_distance(ctx: Context) -> str:
    """Relative: an additive bias is constant along each diagonal (a function of i - j)."""
    module = ctx.fresh()
    if not is_relative(module):
        skip("absolute scheme")
    q, k = _qk(ctx, ctx.T, ctx.T)
    with torch.no_grad():
        _, _, bias = module.adjust(q, k, *_positions(ctx, ctx.T, ctx.T))  # type: ignore[operator]
    if bias is None:
        skip("the scheme returns no bias")
    full = bias.expand(ctx.B, ctx.H, ctx.T, ctx.T)
    diff = max_diff(full[..., 1:, 1:], full[..., :-1, :-1])
    if diff > 1e-5 * scale_of(full):
        fail(f"bias[i, j] differs from bias[i+1, j+1] by {diff:.3g}: not a function of distance")
    return "bias depends only on the distance i - j"


def _generic_checks() -> list[Check]:
    """The generic checks; a relative scheme is fed through `adjust`, seen as a forward."""
    out = []
    for c in generic.float_checks():

        def run(ctx: Context, c: Check = c) -> str | None:
            return c.func(_as_forward(ctx) if is_relative(ctx.part) else ctx)

        run.__doc__ = c.func.__doc__
        out.append(check(c.name, slow=c.slow)(run))
    return out


def _as_forward(ctx: Context) -> Context:
    """A context whose part computes the scores of ``ctx.part`` in its forward."""
    rebuild = ctx.rebuild
    return Context(
        ctx.kind,
        _Adjust(ctx.part),
        ctx.contract,
        sizes=ctx.sizes,
        device=ctx.device,
        slow=ctx.slow,
        rebuild=None if rebuild is None else (lambda **kw: _Adjust(rebuild(**kw))),
        factory=ctx.factory,
        label=ctx.label,
    )


CONTRACT = Contract(
    kind="position",
    checks=(
        shape,
        offset,
        encodes_position,
        shift_invariance,
        bias_by_distance,
        *_generic_checks(),
    ),
    defaults=defaults,
    example=example,
)
