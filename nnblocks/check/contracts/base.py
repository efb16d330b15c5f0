"""The pieces every contract is written with: `Check`, `Contract`, `Context`, outcomes.

A check is a small function ``check(ctx) -> str | None`` that returns a message on success
and raises `Fail`, `Warn` or `Skip` otherwise (through `fail()`, `warn()`, `skip()`). Any
other exception is caught by the kit and recorded as a failure: a crashing check never stops
the kit. Every check works on fresh copies of the part (``ctx.fresh()``), so checks cannot
disturb each other or the user's module.
"""

from __future__ import annotations

import copy
import dataclasses
import inspect
from collections.abc import Callable, Iterator
from typing import Any, NoReturn

import torch
from torch import nn

__all__ = [
    "Call",
    "Check",
    "Contract",
    "Context",
    "Fail",
    "Outcome",
    "Skip",
    "Warn",
    "accepts",
    "check",
    "expect_close",
    "expect_local_change",
    "expect_shape_kept",
    "fail",
    "first",
    "max_diff",
    "scale_of",
    "skip",
    "tensors_in",
    "warn",
]

# The precision a float type is expected to reach against a float64 computation, relative
# to the output's scale: a few hundred machine epsilons, which any sane kernel meets.
PRECISION = {torch.float64: 1e-10, torch.float32: 1e-4, torch.bfloat16: 6e-2, torch.float16: 1e-2}


class Outcome(Exception):
    """Raised by a check to end with a status other than pass."""

    status = "fail"

    def __init__(self, message: str, **details: Any):
        super().__init__(message)
        self.details = details


class Fail(Outcome):
    status = "fail"


class Warn(Outcome):
    status = "warn"


class Skip(Outcome):
    status = "skip"


def fail(message: str, **details: Any) -> NoReturn:
    raise Fail(message, **details)


def warn(message: str, **details: Any) -> NoReturn:
    raise Warn(message, **details)


def skip(message: str, **details: Any) -> NoReturn:
    raise Skip(message, **details)


@dataclasses.dataclass(frozen=True)
class Check:
    """One named check of a contract. ``slow`` checks run only with ``slow=True``."""

    name: str
    func: Callable[[Context], str | None]
    slow: bool = False

    @property
    def summary(self) -> str:
        doc = inspect.getdoc(self.func) or ""
        return doc.splitlines()[0] if doc else ""


def check(name: str, *, slow: bool = False) -> Callable[[Callable[[Context], str | None]], Check]:
    """Decorator: turn ``func(ctx) -> message`` into a `Check` named ``name``."""

    def decorator(func: Callable[[Context], str | None]) -> Check:
        return Check(name, func, slow)

    return decorator


@dataclasses.dataclass
class Call:
    """A call of a part: ``part(*args, **kwargs)``; what the generic checks feed a part."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any] = dataclasses.field(default_factory=dict)

    def run(self, module: nn.Module) -> torch.Tensor:
        """The part's output tensor (the first element when it returns a tuple)."""
        return first(module(*self.args, **self.kwargs))

    def tensors(self) -> list[torch.Tensor]:
        """The floating-point tensors among the arguments (the ones that take gradients)."""
        found = [a for a in self.args if isinstance(a, torch.Tensor)]
        found += [v for v in self.kwargs.values() if isinstance(v, torch.Tensor)]
        return [t for t in found if t.is_floating_point()]

    def with_grad(self) -> Call:
        """A copy whose floating tensors are fresh leaves that require grad."""

        def leaf(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.detach().clone().requires_grad_(True)
            return v

        return Call(tuple(leaf(a) for a in self.args), {k: leaf(v) for k, v in self.kwargs.items()})

    def to(self, dtype: torch.dtype) -> Call:
        """A copy with floating tensors cast to ``dtype`` (masks and token ids unchanged)."""

        def cast(v: Any) -> Any:
            if isinstance(v, torch.Tensor) and v.is_floating_point():
                return v.to(dtype)
            return v

        return Call(tuple(cast(a) for a in self.args), {k: cast(v) for k, v in self.kwargs.items()})


@dataclasses.dataclass(frozen=True)
class Contract:
    """The checks of one kind and how the kit makes a part of that kind and feeds it.

    Args:
        kind: the kind, e.g. ``"attention"``.
        checks: the checks, in the order they run.
        defaults: ``defaults(ctx_sizes, factory_or_module) -> dict``: the constructor
            arguments offered when the kit builds the part (``dim=32, heads=4``).
        example: ``example(ctx) -> Call``: one representative float32 call, used by the
            generic checks and by ``--against``.
    """

    kind: str
    checks: tuple[Check, ...]
    defaults: Callable[[Sizes, Any], dict[str, Any]]
    example: Callable[[Context], Call]


@dataclasses.dataclass(frozen=True)
class Sizes:
    """The small sizes the kit uses: model width, heads, batch and sequence lengths."""

    dim: int = 32
    heads: int = 4
    batch: int = 2
    length: int = 7
    context_length: int = 5
    vocab_size: int = 50


class Context:
    """What a check knows: the part, how to copy or rebuild it, the sizes, the device.

    Args:
        kind: the kind being checked.
        part: the part instance (never modified: checks use `fresh`).
        contract: the kind's contract.
        sizes: small sizes for inputs.
        device: where checks run.
        slow: whether slow checks were asked for.
        rebuild: ``rebuild(**extra_options) -> nn.Module`` building the part again from its
            spec or class, or None for a ready instance (checks needing it are skipped).
        factory: the class or factory the part was built from, when known.
        label: how the part is named in messages (``"attention:mha"``).
    """

    def __init__(
        self,
        kind: str,
        part: nn.Module,
        contract: Contract,
        *,
        sizes: Sizes,
        device: torch.device,
        slow: bool = False,
        rebuild: Callable[..., nn.Module] | None = None,
        factory: Any = None,
        label: str = "",
    ):
        self.kind = kind
        self.part = part
        self.contract = contract
        self.sizes = sizes
        self.device = device
        self.slow = slow
        self.rebuild = rebuild
        self.factory = factory
        self.label = label or type(part).__name__
        # the sizes (frozen), spelled the way the checks read them
        self.B, self.T, self.S = sizes.batch, sizes.length, sizes.context_length
        self.D, self.H = sizes.dim, sizes.heads

    def fresh(self, *, dtype: torch.dtype | None = None, train: bool = False) -> nn.Module:
        """A deep copy of the part on the check device, in eval (or train) mode."""
        module = copy.deepcopy(self.part).to(self.device)
        if dtype is not None:
            module = module.to(dtype)
        return module.train(train)

    def randn(self, *shape: int, dtype: torch.dtype = torch.float32) -> torch.Tensor:
        return torch.randn(*shape, device=self.device, dtype=dtype)

    def example(self) -> Call:
        """The kind's representative call (float32)."""
        return self.contract.example(self)

    def accepts(self, name: str) -> bool:
        """Whether the part's ``forward`` takes the keyword ``name`` (a capability)."""
        return accepts(self.part.forward, name)

    def variant(self, **options: Any) -> nn.Module:
        """The part built again with extra constructor options; skips when impossible."""
        if self.rebuild is None:
            skip(f"needs to build the part with {_show(options)}; pass a name, spec or class")
        if self.factory is not None:
            for name in options:
                if not accepts(self.factory, name):
                    skip(f"the part's constructor takes no `{name}` option")
        return self.rebuild(**options).to(self.device).eval()


def _show(options: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v!r}" for k, v in options.items())


def accepts(func: Callable[..., Any], name: str) -> bool:
    """True when ``func`` (a function or class) names the parameter ``name`` explicitly."""
    target = func.__init__ if inspect.isclass(func) else func  # type: ignore[misc]
    try:
        params = inspect.signature(target).parameters
    except (TypeError, ValueError):
        return False
    return name in params


def first(out: Any) -> torch.Tensor:
    """The output tensor of a call that may return ``(out, weights)`` or ``(out, cache)``."""
    if isinstance(out, (tuple, list)):
        out = out[0]
    if not isinstance(out, torch.Tensor):
        fail(f"expected a tensor output, received {type(out).__name__}")
    return out


def tensors_in(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor inside nested tuples, lists and dicts."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, dict):
        for v in value.values():
            yield from tensors_in(v)
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from tensors_in(v)


def max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    """The largest absolute difference, computed in float64 (0.0 for empty tensors)."""
    if a.numel() == 0:
        return 0.0
    return float((a.detach().double() - b.detach().double()).abs().max())


def scale_of(t: torch.Tensor) -> float:
    """``max(1, max |t|)``: tolerances are relative to the size of the numbers compared."""
    if t.numel() == 0:
        return 1.0
    return max(1.0, float(t.detach().double().abs().max()))


def expect_close(a: torch.Tensor, b: torch.Tensor, tol: float, what: str) -> float:
    """Fail with ``what`` unless ``a`` and ``b`` agree within ``tol`` (relative to scale)."""
    if a.shape != b.shape:
        fail(f"{what}: shapes differ, {list(a.shape)} vs {list(b.shape)}")
    diff = max_diff(a, b)
    if not diff <= tol * scale_of(b):  # `not <=` also catches NaN
        if not bool(torch.isfinite(a).all() and torch.isfinite(b).all()):
            fail(f"{what}: non-finite values in the output")
        fail(f"{what}: largest difference {diff:.3g} (tolerance {tol:.1g})", max_diff=diff)
    return diff


def expect_shape_kept(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``module(x)`` without gradients; fail unless it is a tensor of x's shape and dtype.

    Args:
        module: the part under test, in the mode the check wants.
        x: the input; its shape and dtype are what the output must have.

    Returns:
        The output tensor.

    Raises:
        Fail: the output is not a tensor, or its shape or dtype differs from the input's.
    """
    with torch.no_grad():
        out = module(x)
    if not isinstance(out, torch.Tensor) or out.shape != x.shape or out.dtype != x.dtype:
        got = (
            f"{list(out.shape)} {_dtype_name(out.dtype)}"
            if isinstance(out, torch.Tensor)
            else type(out).__name__
        )
        fail(f"input {list(x.shape)} {_dtype_name(x.dtype)} gave {got}")
    return out


def expect_local_change(
    module: nn.Module,
    x: torch.Tensor,
    base: torch.Tensor,
    index: tuple[int, ...],
    value: torch.Tensor | float,
    tol: float,
    what: str,
) -> torch.Tensor:
    """Set ``x[index] = value`` and fail unless the output changes only at ``index``.

    Args:
        module: the part under test (called as given: wrap in ``torch.no_grad()``).
        x: the input; it is not modified (a copy is changed).
        base: ``module(x)``, what the untouched outputs must stay close to.
        index: the leading indices of what changes: one element ``(b, t, d)`` or one
            position ``(b, t)``; the output is compared over the same leading axes.
        value: the new value at ``index``.
        tol: the tolerance of ``expect_close`` for the untouched outputs.
        what: the failure message.

    Returns:
        The output for the changed input.

    Raises:
        Fail: an output outside ``index`` moved by more than ``tol``.
    """
    x2 = x.clone()
    x2[index] = value
    out = module(x2)
    keep = torch.ones(x.shape[: len(index)], dtype=torch.bool, device=x.device)
    keep[index] = False
    expect_close(out[keep], base[keep], tol, what)
    return out


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
