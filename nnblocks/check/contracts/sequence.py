"""Checks shared by parts that mix positions: attention and blocks.

Both take ``x [B, T, D]``, an optional ``context [B, S, D]``, a boolean mask (True = may
attend) and a ``causal`` flag. They differ only in how the mask of cross-attention is passed
(``mask=`` for attention, ``context_mask=`` for a block) and in what a fully masked query
row gives (zeros for attention; a block adds its residual). `Caller` hides that difference,
so each check below is written once.

The checks compare outputs that must not change; tolerances are relative to the output's
scale (``expect_close``) and tight (1e-5 in float32), because a leak through a softmax is
of the order of one attention weight (about 1/T), far above rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from nnblocks.check.contracts.base import (
    Check,
    Context,
    check,
    expect_close,
    fail,
    first,
    max_diff,
    scale_of,
    skip,
    tensors_in,
    warn,
)
from nnblocks.errors import ShapeError
from nnblocks.generate import reorder_state

__all__ = ["Caller", "sequence_checks", "TOL"]

TOL = 1e-5  # float32 outputs that must not change may differ only by rounding


@dataclasses.dataclass(frozen=True)
class Caller:
    """How the checks call a sequence part.

    Args:
        cross_mask: the keyword that carries the mask over ``context`` keys.
        zero_rows: fully masked query rows must give exactly zero (attention) rather than
            only finite values (a block, which adds the residual).
        has_cross: ``has_cross(module) -> bool``: whether the part does cross-attention.
    """

    cross_mask: str = "mask"
    zero_rows: bool = True
    has_cross: Callable[[nn.Module], bool] = lambda module: True

    def __call__(
        self,
        module: nn.Module,
        x: torch.Tensor,
        *,
        context: torch.Tensor | None = None,
        mask: torch.Tensor | None = None,
        causal: bool = False,
        **extra: Any,
    ) -> Any:
        kwargs: dict[str, Any] = dict(extra)
        if context is not None:
            kwargs["context"] = context
        if mask is not None:
            kwargs["mask" if context is None else self.cross_mask] = mask
        if causal:
            kwargs["causal"] = True
        return module(x, **kwargs)

    def out(self, module: nn.Module, x: torch.Tensor, **kwargs: Any) -> torch.Tensor:
        with torch.no_grad():
            return first(self(module, x, **kwargs))


def _padding(ctx: Context, length: int) -> torch.Tensor:
    """``[B, length]``: row 0 right-padded by 2 keys, row 1 left-padded by 1 (True = real)."""
    mask = torch.ones(ctx.B, length, dtype=torch.bool, device=ctx.device)
    mask[0, -2:] = False
    if ctx.B > 1:
        mask[1, 0] = False
    return mask


def _packed(ctx: Context) -> torch.Tensor:
    """[B, T, T]: packed sequences, causal within each, segmented differently per row.

    Such masks are transitively closed (if i sees k and k sees j, i sees j), as real 3-D
    masks are (document packing, causal with padding); so a composition of attentions
    (`sequential`) keeps them too, while a transposed or ignored mask is caught.
    """
    T = ctx.T
    idx = torch.arange(T, device=ctx.device)
    masks = []
    for b in range(ctx.B):
        cut = 2 + b % max(T - 3, 1)  # a different segment boundary in each row
        segment = (idx >= cut).long()
        same = segment[:, None] == segment[None, :]
        masks.append(same & (idx[None, :] <= idx[:, None]))
    return torch.stack(masks)


def _refusals(message: str, refused: list[str], total: int) -> str:
    """Cases the part refused with ShapeError (a documented limit, e.g. no 3-D masks)."""
    if not refused:
        return message
    if len(refused) == total:
        skip(f"the part refuses every case with ShapeError: {', '.join(refused)}")
    return f"{message}; refused (ShapeError): {', '.join(refused)}"


def _cross_or_skip(ctx: Context, caller: Caller, module: nn.Module) -> None:
    if not caller.has_cross(module):
        skip("the part has no cross-attention")


def sequence_checks(caller: Caller) -> list[Check]:
    """The checks for a part called like attention, in the order they run."""
    return [
        *_shape_checks(caller),
        *_mask_checks(caller),
        *_fully_masked_checks(caller),
        *_cache_checks(caller),
    ]


def _shape_checks(caller: Caller) -> list[Check]:
    """Output shapes, and rows of a batch that stay independent."""

    @check("shape_self")
    def shape_self(ctx: Context) -> str:
        """Self-attention maps [B, T, D] to [B, T, D] in the input's dtype."""
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        out = caller.out(ctx.fresh(), x)
        if tuple(out.shape) != (ctx.B, ctx.T, ctx.D) or out.dtype != x.dtype:
            fail(
                f"expected [B, T, D] = {[ctx.B, ctx.T, ctx.D]} float32, got {list(out.shape)} {out.dtype}"
            )
        return f"[B, T, D] -> {list(out.shape)}"

    @check("shape_cross")
    def shape_cross(ctx: Context) -> str:
        """Cross-attention to a context [B, S, D] maps [B, T, D] to [B, T, D]."""
        module = ctx.fresh()
        _cross_or_skip(ctx, caller, module)
        x, c = ctx.randn(ctx.B, ctx.T, ctx.D), ctx.randn(ctx.B, ctx.S, ctx.D)
        out = caller.out(module, x, context=c)
        if tuple(out.shape) != (ctx.B, ctx.T, ctx.D):
            fail(
                f"expected {[ctx.B, ctx.T, ctx.D]} for context {list(c.shape)}, got {list(out.shape)}"
            )
        return f"x {list(x.shape)}, context {list(c.shape)} -> {list(out.shape)}"

    @check("batch_independence")
    def batch_independence(ctx: Context) -> str:
        """Changing one row of the batch (input, context or mask) changes no other row."""
        if ctx.B < 2:
            skip("needs a batch of at least 2")
        module = ctx.fresh()
        x, c = ctx.randn(ctx.B, ctx.T, ctx.D), ctx.randn(ctx.B, ctx.S, ctx.D)
        mask = _padding(ctx, ctx.T)
        # (row that must not change, call kwargs, the same with the other row changed)
        cases: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        for row in (0, 1):
            x2, m2 = x.clone(), mask.clone()
            x2[1 - row] = ctx.randn(ctx.T, ctx.D)
            m2[1 - row] = True
            cases.append((row, {"x": x, "mask": mask}, {"x": x2, "mask": m2}))
        if caller.has_cross(module):
            c2 = c.clone()
            c2[1] = ctx.randn(ctx.S, ctx.D)
            cases.append((0, {"x": x, "context": c}, {"x": x, "context": c2}))
        for row, a, b in cases:
            what = "cross-attention" if "context" in a else "self-attention"
            causal = what == "self-attention"
            ya = caller.out(module, causal=causal, **a)
            yb = caller.out(module, causal=causal, **b)
            expect_close(
                yb[row], ya[row], TOL, f"{what}: row {row} changed when another row changed"
            )
        return f"{len(cases)} perturbations of other rows leave each row unchanged"

    return [shape_self, shape_cross, batch_independence]


def _mask_checks(caller: Caller) -> list[Check]:
    """Causality, padding masks and 3-D masks hide what they say."""

    @check("causal_leakage")
    def causal_leakage(ctx: Context) -> str:
        """With causal=True, changing positions >= t changes no output before t."""
        module = ctx.fresh()
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        for mask in (None, _padding(ctx, ctx.T)):
            base = caller.out(module, x, mask=mask, causal=True)
            for t in range(1, ctx.T):
                x2 = x.clone()
                x2[:, t:] = ctx.randn(ctx.B, ctx.T - t, ctx.D)
                out = caller.out(module, x2, mask=mask, causal=True)
                if not bool(torch.isfinite(out).all() and torch.isfinite(base).all()):
                    fail("non-finite values in the output of a causal call")
                diff = max_diff(out[:, :t], base[:, :t])
                if not diff <= TOL * scale_of(base):
                    where = "with a padding mask" if mask is not None else "without a mask"
                    fail(
                        f"changing positions >= {t} changed earlier outputs by {diff:.3g} "
                        f"({where}): the part peeks at the future",
                        max_diff=diff,
                    )
        return f"no leak from any of {ctx.T - 1} future cut points, with and without a mask"

    @check("padding_mask")
    def padding_mask(ctx: Context) -> str:
        """Changing keys the mask hides changes nothing (self: unmasked queries; cross: all)."""
        module = ctx.fresh()
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        mask = _padding(ctx, ctx.T)
        base = caller.out(module, x, mask=mask)
        x2 = torch.where(mask[..., None], x, ctx.randn(ctx.B, ctx.T, ctx.D))
        out = caller.out(module, x2, mask=mask)
        expect_close(
            out[mask], base[mask], TOL, "self-attention: changing masked keys changed the output"
        )
        done = "self-attention ignores masked keys"
        if caller.has_cross(module):
            c = ctx.randn(ctx.B, ctx.S, ctx.D)
            cmask = _padding(ctx, ctx.S)
            base = caller.out(module, x, context=c, mask=cmask)
            c2 = torch.where(cmask[..., None], c, ctx.randn(ctx.B, ctx.S, ctx.D))
            out = caller.out(module, x, context=c2, mask=cmask)
            expect_close(
                out, base, TOL, "cross-attention: changing masked context keys changed the output"
            )
            done += "; cross-attention ignores masked context keys"
        return done

    @check("mask_3d")
    def mask_3d(ctx: Context) -> str:
        """A [B, Tq, Tk] mask hides key j from exactly the queries it marks; [B, 1, Tq, Tk] agrees."""
        module = ctx.fresh()
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        mask = _packed(ctx)
        try:
            base = caller.out(module, x, mask=mask)
        except ShapeError as exc:
            skip(f"the part refuses 3-D masks: {exc}")
        for j in range(ctx.T):
            # Perturbing key j also changes query j; only rows i != j that hide j must stay.
            x2 = x.clone()
            x2[:, j] = ctx.randn(ctx.B, ctx.D)
            out = caller.out(module, x2, mask=mask)
            hidden = ~mask[:, :, j]
            hidden[:, j] = False
            expect_close(
                out[hidden], base[hidden], TOL, f"queries that hide key {j} changed when it changed"
            )
        four = caller.out(module, x, mask=mask[:, None])
        differs = "a [B, 1, Tq, Tk] mask gives another output than the same [B, Tq, Tk] mask"
        expect_close(four, base, TOL, differs)
        return f"each of {ctx.T} keys hidden exactly where the 3-D mask says; 4-D mask agrees"

    return [causal_leakage, padding_mask, mask_3d]


def _fully_masked_cases(
    caller: Caller, ctx: Context, module: nn.Module
) -> list[tuple[str, dict[str, Any], torch.Tensor]]:
    """(label, call kwargs, rows [B, T] that see no key)."""
    B, T = ctx.B, ctx.T
    cases: list[tuple[str, dict[str, Any], torch.Tensor]] = []
    m2 = torch.ones(B, T, dtype=torch.bool, device=ctx.device)
    m2[0] = False
    rows = torch.zeros(B, T, dtype=torch.bool, device=ctx.device)
    rows[0] = True
    cases.append(("2-D mask hiding every key of row 0", {"mask": m2}, rows))
    m3 = torch.ones(B, T, T, dtype=torch.bool, device=ctx.device)
    m3[0, 2] = False
    rows = torch.zeros(B, T, dtype=torch.bool, device=ctx.device)
    rows[0, 2] = True
    cases.append(("3-D mask hiding every key from query 2", {"mask": m3}, rows))
    left = torch.ones(B, T, dtype=torch.bool, device=ctx.device)
    left[-1, :2] = False  # left padding: with causal, queries 0 and 1 see nothing
    rows = torch.zeros(B, T, dtype=torch.bool, device=ctx.device)
    rows[-1, :2] = True
    cases.append(("causal with left padding", {"mask": left, "causal": True}, rows))
    if caller.has_cross(module):
        cm = torch.ones(B, ctx.S, dtype=torch.bool, device=ctx.device)
        cm[0] = False
        rows = torch.zeros(B, T, dtype=torch.bool, device=ctx.device)
        rows[0] = True
        c = ctx.randn(B, ctx.S, ctx.D)
        cases.append(
            (
                "cross-attention with every context key of row 0 hidden",
                {"context": c, "mask": cm},
                rows,
            )
        )
    return cases


def _fully_masked_checks(caller: Caller) -> list[Check]:
    """Query rows with no key to attend: finite, and zero for attention."""

    @check("fully_masked_finite")
    def fully_masked_finite(ctx: Context) -> str:
        """Query rows that may attend to no key give finite outputs and finite gradients."""
        module = ctx.fresh(train=True)
        cases = _fully_masked_cases(caller, ctx, module)
        refused = []
        for label, kwargs, _ in cases:
            module.zero_grad(set_to_none=True)
            x = ctx.randn(ctx.B, ctx.T, ctx.D).requires_grad_(True)
            try:
                out = first(caller(module, x, **kwargs))
            except ShapeError:
                refused.append(label)
                continue
            if not bool(torch.isfinite(out).all()):
                fail(f"{label}: non-finite output ({int((~torch.isfinite(out)).sum())} values)")
            (out * torch.randn_like(out)).sum().backward()
            grads = [x.grad] + [p.grad for p in module.parameters()]
            if any(g is not None and not bool(torch.isfinite(g).all()) for g in grads):
                fail(f"{label}: output finite but non-finite gradients")
        return _refusals(
            f"{len(cases) - len(refused)} fully masked cases give finite outputs and gradients",
            refused,
            len(cases),
        )

    @check("fully_masked_zero")
    def fully_masked_zero(ctx: Context) -> str:
        """Query rows that may attend to no key return zeros (nnblocks' convention).

        DESIGN.md asks only for finite outputs, so a part that returns another finite value
        gets a warning, not a failure."""
        if not caller.zero_rows:
            skip("a block adds its residual: fully masked rows need only be finite")
        module = ctx.fresh()
        cases = _fully_masked_cases(caller, ctx, module)
        refused = []
        for label, kwargs, rows in cases:
            try:
                out = caller.out(module, ctx.randn(ctx.B, ctx.T, ctx.D), **kwargs)
            except ShapeError:
                refused.append(label)
                continue
            worst = (
                float(out[rows].abs().max())
                if bool(torch.isfinite(out[rows]).all())
                else float("nan")
            )
            if worst != 0.0:
                warn(
                    f"{label}: fully masked rows are finite but not zero (largest |value| "
                    f"{worst:.3g}); the built-in parts return zeros"
                )
        return _refusals("fully masked rows are exactly zero", refused, len(cases))

    return [fully_masked_finite, fully_masked_zero]


def _cache_checks(caller: Caller) -> list[Check]:
    """Incremental decoding with a cache equals one full pass."""

    @check("cache_self")
    def cache_self(ctx: Context) -> str:
        """Causal decoding with a cache, a chunk then one position at a time, equals one full pass."""
        if not ctx.accepts("cache"):
            skip("the part takes no `cache=` (no incremental decoding)")
        module = ctx.fresh()
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
        mask[-1, 0] = False  # left padding, as a batch of prompts has
        full = caller.out(module, x, mask=mask, causal=True)
        outs, cache = _decode(caller, module, x, mask, {}, 0, ctx.B)
        expect_close(torch.cat(outs, 1), full, TOL, "cached decoding differs from the full pass")
        return f"{len(outs)} cached steps equal the full pass; cache tensors are batch-first"

    @check("cache_reorder")
    def cache_reorder(ctx: Context) -> str:
        """A cache reordered along batch (beam search) goes on decoding the reordered rows."""
        if not ctx.accepts("cache"):
            skip("the part takes no `cache=` (no incremental decoding)")
        if ctx.B < 2:
            skip("needs a batch of at least 2")
        module = ctx.fresh()
        x = ctx.randn(ctx.B, ctx.T, ctx.D)
        mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
        full = caller.out(module, x, mask=mask, causal=True)
        cut = ctx.T - 2
        _, cache = _decode(caller, module, x[:, :cut], mask[:, :cut], {}, 0, ctx.B)
        order = torch.arange(ctx.B - 1, -1, -1, device=ctx.device)
        cache = reorder_state(cache, order)
        outs, _ = _decode(caller, module, x[order], mask[order], cache, cut, ctx.B)
        expect_close(
            torch.cat(outs, 1),
            full[order][:, cut:],
            TOL,
            "decoding after reordering the cache differs",
        )
        return "index_select(0, order) on every cache tensor reorders the decoding"

    @check("cache_cross")
    def cache_cross(ctx: Context) -> str:
        """Cross-attention step by step with a cache equals one full pass."""
        if not ctx.accepts("cache"):
            skip("the part takes no `cache=` (no incremental decoding)")
        module = ctx.fresh()
        _cross_or_skip(ctx, caller, module)
        x, c = ctx.randn(ctx.B, ctx.T, ctx.D), ctx.randn(ctx.B, ctx.S, ctx.D)
        cmask = _padding(ctx, ctx.S)
        full = caller.out(module, x, context=c, mask=cmask)
        cache: Any = {}
        outs = []
        with torch.no_grad():
            for t in range(ctx.T):
                out, cache = _unpack_cache(
                    caller(module, x[:, t : t + 1], context=c, mask=cmask, cache=cache)
                )
                outs.append(out)
        _check_cache(cache, ctx.B)
        expect_close(
            torch.cat(outs, 1), full, TOL, "cached cross-attention differs from the full pass"
        )
        return f"{ctx.T} cached cross-attention steps equal the full pass"

    return [cache_self, cache_reorder, cache_cross]


def _decode(
    caller: Caller,
    module: nn.Module,
    x: torch.Tensor,
    mask: torch.Tensor,
    cache: Any,
    start: int,
    batch: int,
) -> tuple[list[torch.Tensor], Any]:
    """Feed ``x[:, start:]`` (a chunk of up to 3 first, then one at a time) through the cache."""
    outs = []
    t = start
    with torch.no_grad():
        while t < x.shape[1]:
            step = 3 if t == 0 else 1
            out, cache = _unpack_cache(
                caller(
                    module, x[:, t : t + step], mask=mask[:, : t + step], causal=True, cache=cache
                )
            )
            _check_cache(cache, batch)
            outs.append(out)
            t += step
    return outs, cache


def _unpack_cache(result: Any) -> tuple[torch.Tensor, Any]:
    if not (isinstance(result, tuple) and len(result) == 2 and isinstance(result[1], dict)):
        fail(
            f"with cache= the part must return (out, cache dict); received {type(result).__name__}"
        )
    return result[0], result[1]


def _check_cache(cache: Any, batch: int) -> None:
    for t in tensors_in(cache):
        if t.dim() == 0 or t.shape[0] != batch:
            fail(
                f"every cache tensor must have batch ({batch}) as its first dimension; found "
                f"{list(t.shape)} (beam search reorders caches with index_select(0, ...))"
            )
    _check_leaves(cache)


def _check_leaves(value: Any) -> None:
    if isinstance(value, dict):
        for v in value.values():
            _check_leaves(v)
    elif isinstance(value, (list, tuple)):
        for v in value:
            _check_leaves(v)
    elif not isinstance(value, (torch.Tensor, int, type(None))):
        fail(f"a cache may hold tensors and ints only; found {type(value).__name__}")
