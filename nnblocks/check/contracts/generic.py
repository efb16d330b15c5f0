"""Checks every kind shares: dtypes kept, gradients, determinism, inputs left unchanged,
state_dict round trip.

They feed the part its kind's representative call (``contract.example``), so one function
serves every kind. Kinds add their own checks (causal leakage, normalisation axes) next to
these in their own module.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from nnblocks.check.contracts.base import (
    PRECISION,
    Call,
    Check,
    Context,
    Contract,
    check,
    expect_close,
    fail,
    max_diff,
    scale_of,
    tensors_in,
    warn,
)

if TYPE_CHECKING:
    from nnblocks.check.contracts.base import Sizes

__all__ = [
    "dtype_checks",
    "gradient",
    "determinism",
    "inputs_unchanged",
    "state_dict_round_trip",
    "float_checks",
    "float_contract",
    "finite_difference_error",
    "fallback_contract",
]

_DTYPES = (torch.float32, torch.bfloat16, torch.float64)


def _dtype_check(dtype: torch.dtype) -> Check:
    short = str(dtype).removeprefix("torch.")

    def run(ctx: Context) -> str:
        call = ctx.example()
        module = ctx.fresh(dtype=dtype)
        with torch.no_grad():
            ref = call.to(torch.float64).run(ctx.fresh(dtype=torch.float64))
            out = call.to(dtype).run(module)
        if out.dtype != dtype:
            fail(
                f"the part converted to {short} returned {str(out.dtype).removeprefix('torch.')} "
                f"for {short} inputs: it computes in another dtype"
            )
        if not bool(torch.isfinite(out).all()):
            fail(f"non-finite values in the {short} output")
        if dtype == torch.float64:
            err = finite_difference_error(module, call.to(torch.float64))
            if err is None:
                return "float64 kept (no floating input to differentiate)"
            if not err <= 1e-5:
                fail(
                    f"float64 output kept, but finite differences disagree with autograd by "
                    f"{err:.2g} (relative): the part computes in lower precision or has a "
                    "wrong backward",
                    error=err,
                )
            return f"float64 kept; finite differences match autograd (relative error {err:.1g})"
        diff = max_diff(out, ref)
        tol = PRECISION[dtype] * scale_of(ref)
        if not diff <= tol:
            fail(
                f"{short} output differs from float64 by {diff:.3g} (tolerance {tol:.2g}): the "
                "part loses precision, e.g. by computing in a lower precision dtype",
                max_diff=diff,
            )
        return f"{short} kept; largest difference from float64 {diff:.2g}"

    run.__doc__ = f"A {short} part given {short} inputs returns {short}, accurate to that dtype."
    return check(f"dtype_{short}")(run)


def dtype_checks() -> list[Check]:
    """``dtype_float32``, ``dtype_bfloat16``, ``dtype_float64``."""
    return [_dtype_check(d) for d in _DTYPES]


def finite_difference_error(module: torch.nn.Module, call: Call, eps: float = 1e-6) -> float | None:
    """Relative error between a central finite difference and autograd along a random direction.

    In true float64 this is about 1e-9; a part that secretly computes in float32 gives about
    1e-1, because float32 rounding (1e-7) divided by the step (1e-6) swamps the difference.
    Returns None when the call has no floating input.
    """
    leaves = call.with_grad()
    inputs = leaves.tensors()
    if not inputs:
        return None
    out = leaves.run(module)
    u = torch.randn_like(out)
    grads = torch.autograd.grad((out * u).sum(), inputs, allow_unused=True)
    directions = [torch.randn_like(t) for t in inputs]
    analytic = sum(float((g * v).sum()) for g, v in zip(grads, directions) if g is not None)

    def value(sign: float) -> float:
        moved = {id(t): (t + sign * eps * v).detach() for t, v in zip(inputs, directions)}
        shifted = Call(
            tuple(moved.get(id(a), a) for a in leaves.args),
            {k: moved.get(id(v), v) for k, v in leaves.kwargs.items()},
        )
        with torch.no_grad():
            return float((shifted.run(module) * u).sum())

    numeric = (value(1.0) - value(-1.0)) / (2 * eps)
    return abs(numeric - analytic) / max(1.0, abs(analytic))


@check("gradient")
def gradient(ctx: Context) -> str:
    """Every parameter and every floating input receives a finite gradient."""
    module = ctx.fresh(train=True)
    call = ctx.example().with_grad()
    out = call.run(module)
    if not out.requires_grad:
        fail("the output does not require grad: the part cuts the graph (detach, no_grad)")
    (out * torch.randn_like(out)).sum().backward()
    missing, bad, zero = [], [], []
    for name, p in module.named_parameters():
        if not p.requires_grad:
            continue
        if p.grad is None:
            missing.append(name)
        elif not bool(torch.isfinite(p.grad).all()):
            bad.append(name)
        elif not bool(p.grad.any()):
            zero.append(name)
    inputs = call.tensors()
    no_input_grad = [i for i, t in enumerate(inputs) if t.grad is None or not bool(t.grad.any())]
    if missing:
        fail(f"parameters that never get a gradient: {', '.join(missing)}")
    if bad:
        fail(f"non-finite gradients in: {', '.join(bad)}")
    if no_input_grad:
        fail(f"no gradient reaches floating input(s) {no_input_grad} of the call")
    n = sum(1 for p in module.parameters() if p.requires_grad)
    if zero:
        warn(
            f"gradient exactly zero for: {', '.join(zero)} (unused in this call, or the "
            "output is invariant to them)"
        )
    return f"{n} parameter(s) and {len(inputs)} input(s) receive finite gradients"


@check("determinism")
def determinism(ctx: Context) -> str:
    """In eval mode the same input gives the same output, even after another call."""
    module = ctx.fresh()
    call, other = ctx.example(), ctx.example()
    with torch.no_grad():
        a = call.run(module)
        other.run(module)  # a part must keep no hidden state between calls
        b = call.run(module)
    if torch.equal(a, b):
        return "eval outputs identical across calls"
    diff = max_diff(a, b)
    if diff <= 1e-6 * scale_of(a):
        warn(f"eval outputs differ by {diff:.2g} across calls (not bitwise deterministic)")
    fail(
        f"eval outputs differ by {diff:.3g} between two calls with the same input: randomness "
        "in eval mode or state kept between calls"
    )


# Kinds whose parts run on an intermediate their caller made for them (an activation inside a
# feedforward, dropout on a residual branch): writing into it is torch's memory-saving
# `inplace=True`, so the check warns. Every other kind gets a tensor its caller uses again.
_INPLACE_TOLERATED = frozenset({"activation", "regularization"})


def _named_tensors(module: torch.nn.Module, call: Call) -> list[tuple[str, torch.Tensor]]:
    """The call's tensor arguments, named by the ``forward`` parameter they bind to."""
    try:
        names = list(inspect.signature(module.forward).parameters)
    except (TypeError, ValueError):
        names = []
    found = []
    for i, arg in enumerate(call.args):
        name = names[i] if i < len(names) else f"argument {i}"
        found += [(f"`{name}`", t) for t in tensors_in(arg)]
    for key, value in call.kwargs.items():
        found += [(f"`{key}`", t) for t in tensors_in(value)]
    return found


@check("inputs_unchanged")
def inputs_unchanged(ctx: Context) -> str:
    """The call leaves its input tensors as they were, in eval and in train mode.

    A slot's input is used again after its part returns (the residual sum adds the block's
    input to the branch), so a part that writes into it changes the model's result without
    an error, and autograd does not notice when nothing saved that input.
    """
    written = []
    for train in (False, True):
        call = ctx.example()
        module = ctx.fresh(train=train)
        inputs = _named_tensors(module, call)
        before = [t.detach().clone() for _, t in inputs]
        with torch.no_grad():
            call.run(module)
        for (name, t), old in zip(inputs, before):
            same = torch.equal(t, old) or (
                t.is_floating_point() and torch.allclose(t, old, rtol=0, atol=0, equal_nan=True)
            )
            if not same:
                written.append(f"{name} ({'train' if train else 'eval'} mode)")
    if not written:
        return "no input tensor written to (eval and train mode)"
    message = (
        f"the part wrote into its input {', '.join(written)}: the caller "
        "uses that tensor again (e.g. in the residual sum), so the model's result changes "
        "silently; compute into a new tensor (e.g. `x * w`, not `x.mul_(w)`)"
    )
    if ctx.kind in _INPLACE_TOLERATED:
        warn(message + " unless the part is only ever given an intermediate it owns")
    fail(message)


def _perturbed(module: torch.nn.Module) -> None:
    """Change every tensor of the state_dict in place (non-persistent buffers stay)."""
    with torch.no_grad():
        for t in module.state_dict(keep_vars=True).values():
            if t.is_floating_point():
                t.add_(torch.randn_like(t))
            elif t.dtype != torch.bool and t.numel():
                t.add_(1)


@check("state_dict_round_trip")
def state_dict_round_trip(ctx: Context) -> str:
    """Weights loaded into a copy (and into a part rebuilt from its spec) give the same output."""
    module = ctx.fresh()
    call = ctx.example()
    with torch.no_grad():
        expected = call.run(module)
    keys_before = set(module.state_dict())
    with torch.no_grad():
        call.run(module)
    keys_after = set(module.state_dict())
    if keys_before != keys_after:
        fail(
            "a forward pass changed the state_dict keys (added "
            f"{sorted(keys_after - keys_before)}, removed {sorted(keys_before - keys_after)})"
        )
    state = module.state_dict()
    copy_ = ctx.fresh()
    _perturbed(copy_)
    copy_.load_state_dict(state, strict=True)
    with torch.no_grad():
        got = call.run(copy_)
    expect_close(got, expected, 0.0, "a copy loaded with the state_dict gives another output")
    done = f"{len(state)} tensor(s) round trip"
    if ctx.rebuild is None:
        return done + " (a ready instance: rebuilding from its spec not checked)"
    rebuilt = ctx.rebuild().to(ctx.device).eval()
    missing, unexpected = rebuilt.load_state_dict(state, strict=False)
    if missing or unexpected:
        fail(
            f"a part rebuilt from its spec has other state_dict keys: missing {missing}, "
            f"unexpected {unexpected}"
        )
    with torch.no_grad():
        got = call.run(rebuilt)
    expect_close(got, expected, 0.0, "the part rebuilt from its spec with the same weights differs")
    return done + "; rebuilt from its spec gives the same output"


def float_checks() -> list[Check]:
    """The generic checks for a differentiable part, in the order they run."""
    return [*dtype_checks(), gradient, determinism, inputs_unchanged, state_dict_round_trip]


def float_contract(
    kind: str,
    *checks: Check,
    defaults: Callable[[Sizes, Any], dict[str, Any]],
    example: Callable[[Context], Call],
) -> Contract:
    """The contract of a differentiable kind: its own ``checks``, then ``float_checks()``."""
    return Contract(kind, (*checks, *float_checks()), defaults, example)


@check("shape")
def shape(ctx: Context) -> str:
    """The part maps x [B, T, D] to a tensor that keeps the batch dimension."""
    x = ctx.example().args[0]
    with torch.no_grad():
        out = ctx.fresh()(x)
    if not isinstance(out, torch.Tensor):
        fail(f"expected a tensor output, received {type(out).__name__}")
    if out.shape[:1] != x.shape[:1]:
        fail(f"the batch dimension changed: {list(x.shape)} -> {list(out.shape)}")
    return f"{list(x.shape)} -> {list(out.shape)}"


def fallback_contract(kind: str) -> Contract:
    """Checks for a kind added with ``registry.add_kind`` that has no contract of its own:
    the part is built as ``Part(dim=32)`` and fed ``x [B, T, D]``."""

    def example(ctx: Context) -> Call:
        return Call((ctx.randn(ctx.B, ctx.T, ctx.D),))

    return float_contract(
        kind, shape, defaults=lambda sizes, part: {"dim": sizes.dim}, example=example
    )
