"""Compare two runs of one model (eager against compiled or exported), output by output.

Outputs may be a tensor or any nesting of tuples, lists and dicts of tensors (and plain
values). Both runs are flattened to ``(where, leaf)`` pairs, e.g. ``output[0]`` or
``output['logits']``, and compared leaf by leaf with ``torch.isclose``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from nnblocks.registry import kind_of

__all__ = ["Comparison", "compare", "describe_model", "flatten", "tolerance"]

# (rtol, atol) per dtype. Looser than torch.testing's defaults on purpose: fused kernels and
# other runtimes reorder floating-point sums, so the last bits of a float32 result move.
_TOLERANCES: dict[torch.dtype, tuple[float, float]] = {
    torch.float64: (1e-7, 1e-9),
    torch.float32: (1e-4, 1e-5),
    torch.float16: (1e-2, 1e-3),
    torch.bfloat16: (5e-2, 1e-2),
}
_DEFAULT_TOLERANCE = (1e-4, 1e-5)


def tolerance(
    dtype: torch.dtype, rtol: float | None = None, atol: float | None = None
) -> tuple[float, float]:
    """``(rtol, atol)`` for comparing tensors of ``dtype``; given values win over defaults.

    Integer and bool outputs are compared exactly (both 0).
    """
    if not (dtype.is_floating_point or dtype.is_complex):
        return 0.0, 0.0
    default_rtol, default_atol = _TOLERANCES.get(dtype, _DEFAULT_TOLERANCE)
    return (
        default_rtol if rtol is None else float(rtol),
        default_atol if atol is None else float(atol),
    )


def flatten(value: Any, where: str = "output") -> list[tuple[str, Any]]:
    """``[(where, leaf), ...]`` for a nesting of tuples, lists and dicts (dict order kept)."""
    if isinstance(value, torch.Tensor):
        return [(where, value)]
    if isinstance(value, Mapping):
        out: list[tuple[str, Any]] = []
        for key, item in value.items():
            out.extend(flatten(item, f"{where}[{key!r}]"))
        return out
    if isinstance(value, Sequence) and not isinstance(value, (str, bytes)):
        out = []
        for i, item in enumerate(value):
            out.extend(flatten(item, f"{where}[{i}]"))
        return out
    return [(where, value)]


def describe_model(model: Any) -> str:
    """``TransformerLM (model `transformer_lm`)``, or the type name of an unbuilt module."""
    kind = kind_of(model)
    name = getattr(model, "_nnblocks_spec", {}).get("name") if kind else None
    type_name = type(model).__name__
    return f"{type_name} ({kind} `{name}`)" if name else type_name


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The result of comparing a run against the eager reference.

    Attributes:
        ok: every leaf within tolerance (and the same structure, shapes and plain values).
        max_diff: the largest absolute difference over all tensor leaves (0.0 if none).
        where: the leaf and index holding ``max_diff`` (``output[0] at index (1, 3)``), or the
            first leaf that failed for another reason.
        problem: why the comparison failed ('' when ok).
    """

    ok: bool
    max_diff: float
    where: str
    problem: str = ""


def _largest(expected: torch.Tensor, actual: torch.Tensor) -> tuple[float, tuple[int, ...]]:
    e, a = expected.detach().double(), actual.detach().double()
    both_nan = torch.isnan(e) & torch.isnan(a)
    diff = (e - a).abs().masked_fill(both_nan, 0.0)  # a NaN on one side only stays NaN
    diff = torch.nan_to_num(diff, nan=float("inf"))
    if diff.numel() == 0:
        return 0.0, ()
    flat = int(diff.argmax())
    return float(diff.reshape(-1)[flat]), _unravel(flat, tuple(diff.shape))


def _unravel(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    # torch.unravel_index would do, but its first call costs a second of imports.
    index = []
    for size in reversed(shape):
        flat, i = divmod(flat, size)
        index.append(i)
    return tuple(reversed(index))


def compare(
    expected: Any,
    actual: Any,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    what: str = "compiled",
) -> Comparison:
    """Compare ``actual`` against the eager ``expected`` within per-dtype tolerances.

    Args:
        expected: the eager output (any nesting, see ``flatten``).
        actual: the other run's output, same nesting (tensors may be on another device).
        rtol, atol: override the per-dtype defaults of ``tolerance``.
        what: the other run's name, used in ``problem``.

    Returns:
        A ``Comparison``; ``problem`` says which output differs, by how much, and what was
        allowed.
    """
    left, right = flatten(expected), flatten(actual)
    if len(left) != len(right):
        return Comparison(
            False, float("inf"), "output",
            f"the {what} run gives {len(right)} outputs, the eager run {len(left)}",
        )  # fmt: skip
    worst, worst_where, problem, problem_where = 0.0, "output", "", ""
    for (where, e), (_, a) in zip(left, right):
        if not isinstance(e, torch.Tensor):
            if e != a and not problem:
                problem, problem_where = f"`{where}` is {a!r}, eager gives {e!r}", where
            continue
        if not isinstance(a, torch.Tensor):
            a = torch.as_tensor(a)
        a = a.to(e.device)
        if a.shape != e.shape:
            if not problem:
                problem = (
                    f"`{where}` has shape {tuple(a.shape)} in the {what} run, "
                    f"{tuple(e.shape)} in eager"
                )
                problem_where = where
            continue
        diff, index = _largest(e, a)
        if diff > worst or worst_where == "output":
            worst, worst_where = diff, f"{where} at index {index}"
        r, t = tolerance(e.dtype, rtol, atol)
        close = torch.isclose(a.to(e.dtype), e, rtol=r, atol=t, equal_nan=True)
        if not bool(close.all()) and not problem:
            bad = tuple(int(i) for i in (~close).nonzero()[0])
            problem = (
                f"`{where}` at {bad}: eager {e[bad].item():.6g}, {what} {a[bad].item():.6g}; "
                f"allowed |diff| <= atol {t:g} + rtol {r:g} * |eager|"
            )
            problem_where = f"{where} at index {bad}"
    if problem:
        return Comparison(False, worst, problem_where, problem)
    return Comparison(True, worst, worst_where)
