"""`--against`: the same weights in two parts, compared output by output, per dtype.

An optimised kernel and a plain one (or a new part and the built-in it replaces) are useful
together only if they compute the same function. When both have parameters with the same
names and shapes, the kit loads one set of weights into both, feeds both the kind's
representative call, and reports the largest forward and gradient difference, relative to
the size of the numbers, against a tolerance per dtype.
"""

from __future__ import annotations

import copy
from typing import Any

import torch
from torch import nn

from nnblocks.check.contracts import Context
from nnblocks.check.contracts.base import max_diff, scale_of
from nnblocks.check.report import Record

__all__ = ["TOLERANCES", "compare_modules"]

# Relative to max(1, max |reference|): a few hundred rounding errors of each dtype.
TOLERANCES = {torch.float64: 1e-10, torch.float32: 1e-5, torch.bfloat16: 1e-2}


def compare_modules(ctx: Context, reference: nn.Module, *, label: str) -> list[Record]:
    """Records comparing ``ctx.part`` with ``reference`` (see `kit.compare_parts`).

    Args:
        ctx: the part under test, built by the kit (``kit.make_context``).
        reference: a module of the same kind with the same parameter names and shapes.
        label: how the reference is named in the messages.

    Returns:
        One record per dtype, or a single failed ``against_parameters`` record when the
        parameters do not match.

    Example:
        >>> import nnblocks
        >>> from nnblocks.check.kit import OPTIONS, make_context
        >>> ctx = make_context("attention", "mha", OPTIONS)
        >>> reference = nnblocks.build("mha", "attention", dim=32, heads=4)
        >>> [r.status for r in compare_modules(ctx, reference, label="mha")]
        ['pass', 'pass', 'pass']
    """
    mismatch = _parameter_mismatch(ctx.part, reference)
    if mismatch:
        return [Record("against_parameters", "fail", f"cannot compare with {label}: {mismatch}")]
    call = ctx.example()
    records = []
    for dtype, tol in TOLERANCES.items():
        name = f"against_{str(dtype).removeprefix('torch.')}"
        try:
            fwd, grad = _differences(ctx, reference, call, dtype)
        except Exception as exc:  # one dtype failing must not hide the others
            records.append(Record(name, "fail", f"crashed: {type(exc).__name__}: {exc}"))
            continue
        status = "pass" if fwd <= tol and grad <= tol else "fail"
        message = (
            f"vs {label}: forward {fwd:.2g}, gradient {grad:.2g} (relative; tolerance {tol:.0e})"
        )
        records.append(
            Record(name, status, message, {"forward": fwd, "gradient": grad, "tolerance": tol})
        )
    return records


def _parameter_mismatch(a: nn.Module, b: nn.Module) -> str:
    sa, sb = a.state_dict(), b.state_dict()
    only_a, only_b = sorted(set(sa) - set(sb)), sorted(set(sb) - set(sa))
    shapes = [
        f"{k} {list(sa[k].shape)} vs {list(sb[k].shape)}"
        for k in sa
        if k in sb and sa[k].shape != sb[k].shape
    ]
    problems = []
    if only_a:
        problems.append(f"only in the part: {only_a}")
    if only_b:
        problems.append(f"only in the reference: {only_b}")
    if shapes:
        problems.append(f"shapes differ: {shapes}")
    return "; ".join(problems)


def _differences(
    ctx: Context, reference: nn.Module, call: Any, dtype: torch.dtype
) -> tuple[float, float]:
    """(largest relative forward difference, largest relative gradient difference)."""
    a = ctx.fresh(dtype=dtype)
    b = copy.deepcopy(reference).to(device=ctx.device, dtype=dtype).eval()
    b.load_state_dict(a.state_dict())
    typed = call.to(dtype)
    ca, cb = typed.with_grad(), typed.with_grad()
    ya, yb = ca.run(a), cb.run(b)
    forward = max_diff(ya, yb) / scale_of(yb)
    upstream = torch.randn_like(ya)
    (ya * upstream).sum().backward()
    (yb * upstream).sum().backward()
    grads_b = dict(b.named_parameters())
    worst = 0.0
    for name, pa in a.named_parameters():
        pb = grads_b[name]
        if pa.grad is None or pb.grad is None:
            if (pa.grad is None) != (pb.grad is None):
                return forward, float("inf")
            continue
        worst = max(worst, max_diff(pa.grad, pb.grad) / scale_of(pb.grad))
    for ta, tb in zip(ca.tensors(), cb.tensors()):
        if ta.grad is not None and tb.grad is not None:
            worst = max(worst, max_diff(ta.grad, tb.grad) / scale_of(tb.grad))
    return forward, worst
