"""``hybridize``: debug eagerly, run compiled when it pays.

MXNet's ``HybridBlock.hybridize()`` let one model run imperatively while being debugged and
as a graph when speed mattered (Chen et al. 2015, "MXNet: a flexible and efficient machine
learning library"). ``torch.compile`` gives PyTorch the graph half; what it does not say is
whether the graph is faster *for this model on this batch* (on CPU and for small models it
often is not) and whether it computes the same thing. ``hybridize`` answers both on the real
example batch before it hands anything back.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.hybrid._compare import compare, describe_model, flatten
from nnblocks.hybrid._errors import EquivalenceError, ExportError
from nnblocks.hybrid._state import (
    as_args,
    devices_of,
    eval_mode,
    kept_training_state,
    synchronizer,
)
from nnblocks.hybrid._timing import TimeFn, measure

__all__ = ["HybridResult", "choose", "hybridize"]

log = logging.getLogger(__name__)

_MODES = ("auto", "eager", "compile")


@dataclasses.dataclass(frozen=True)
class HybridResult:
    """What ``hybridize`` chose and why.

    Attributes:
        mode: ``"eager"`` or ``"compile"``: the version in ``model``.
        model: what to call from now on: the eager model or ``torch.compile(model)`` (which
            shares the eager model's parameters).
        eager_s, compiled_s: median seconds per step measured by ``mode="auto"`` (None when
            not measured).
        compile_s: seconds of the first compiled call (tracing and code generation).
        max_diff: the largest absolute difference between compiled and eager outputs on
            the example (None when not checked).
        backward: whether the measured step included the backward pass.
        reason: one line saying why ``mode`` was chosen.
    """

    mode: str
    model: Callable[..., Any]
    eager_s: float | None = None
    compiled_s: float | None = None
    compile_s: float | None = None
    max_diff: float | None = None
    backward: bool = False
    reason: str = ""

    @property
    def speedup(self) -> float | None:
        """Eager time over compiled time (> 1: compiled is faster), when both were measured."""
        if self.eager_s is None or not self.compiled_s:
            return None
        return self.eager_s / self.compiled_s

    def __str__(self) -> str:
        parts = [f"mode={self.mode}"]
        if self.eager_s is not None and self.compiled_s is not None:
            step = "forward+backward" if self.backward else "forward"
            parts.append(
                f"{step}: eager {self.eager_s * 1e3:.3g} ms, compiled "
                f"{self.compiled_s * 1e3:.3g} ms (x{self.speedup:.2f})"
            )
        if self.compile_s is not None:
            parts.append(f"compile {self.compile_s:.1f} s")
        if self.max_diff is not None:
            parts.append(f"max |diff| {self.max_diff:.3g}")
        return "; ".join(parts) + (f" — {self.reason}" if self.reason else "")


def choose(eager_s: float, compiled_s: float, min_speedup: float = 1.1) -> str:
    """``"compile"`` when the compiled step is at least ``min_speedup`` times faster.

    A margin above 1 keeps the eager model when the two are within timing noise: a compiled
    model costs a recompilation whenever a guard fails (a new shape, a new dtype), so it
    must win clearly to be worth it.
    """
    if compiled_s > 0 and eager_s / compiled_s >= min_speedup:
        return "compile"
    return "eager"


# Over 80 lines by its docstring only (the public API's full documentation); the body
# is the three steps of the docstring, each in a helper below.
def hybridize(
    model: nn.Module,
    example_inputs: Any,
    mode: str = "auto",
    *,
    loss_fn: Callable[..., torch.Tensor] | None = None,
    targets: Sequence[Any] = (),
    backward: bool | None = None,
    rtol: float | None = None,
    atol: float | None = None,
    warmup: int = 3,
    repeats: int = 10,
    min_speedup: float = 1.1,
    compile_options: Mapping[str, Any] | None = None,
    compile_fn: Callable[..., Callable[..., Any]] | None = None,
    time_fn: TimeFn | None = None,
) -> HybridResult:
    """Choose between the eager model and ``torch.compile(model)`` on a real batch.

    ``"eager"`` returns the model as is. ``"compile"`` compiles it and checks, on the
    example, that the compiled outputs equal the eager ones within tolerance. ``"auto"``
    also times both versions on the example, interleaved, and keeps the compiled one only
    when it is at least ``min_speedup`` times faster ("compile when it pays").

    The check runs both versions in eval mode without gradients (dropout off, so the runs
    are comparable), then restores every module's mode. The timed step is forward only,
    unless the model is in training mode and has something to differentiate (a trainable
    parameter, an input that requires grad, or ``loss_fn``): then it is forward and
    backward, as in training. Gradients, buffers (BatchNorm statistics) and the random
    stream are restored afterwards, so the call has no side effects on the model.

    Args:
        model: the eager model.
        example_inputs: one real batch of model inputs: a tensor or a tuple of positional
            arguments (``model(*example_inputs)``).
        mode: ``"auto"``, ``"eager"`` or ``"compile"``.
        loss_fn: ``loss_fn(output, *targets)`` for the timed backward; without it the
            backward starts from the sum of the floating-point outputs.
        targets: the loss targets of the example batch.
        backward: force (True) or forbid (False) the backward pass in the timed step.
        rtol, atol: tolerances of the equivalence check; defaults per dtype (float32:
            rtol 1e-4, atol 1e-5; float16: 1e-2, 1e-3; bfloat16: 5e-2, 1e-2).
        warmup: untimed steps of each version before timing (at least 1: the first
            compiled training step compiles the backward graph).
        repeats: timed steps of each version; the median is kept.
        min_speedup: how much faster the compiled step must be to be chosen.
        compile_options: keyword arguments of ``torch.compile`` (``mode``, ``dynamic``,
            ``fullgraph``, ``backend``).
        compile_fn: replaces ``torch.compile`` (tests, other compilers): called as
            ``compile_fn(model, **compile_options)``.
        time_fn: replaces the timer: ``time_fn(steps, warmup=, repeats=, sync=)`` returning
            seconds per step for the names ``"eager"`` and ``"compiled"``.

    Returns:
        A ``HybridResult``: ``.model`` is what to call, ``.mode`` which version it is,
        with the timings and the largest difference found. In ``"auto"`` mode a compile
        failure or a compiled model that disagrees with eager falls back to eager (the
        reason is in ``.reason`` and logged as a warning).

    Raises:
        SpecError: an unknown ``mode`` or a bad ``warmup``/``repeats``/``min_speedup``.
        ExportError: ``mode="compile"`` and ``torch.compile`` failed on the model.
        EquivalenceError: ``mode="compile"`` and the compiled outputs differ from eager,
            naming the output, the index and the largest difference.

    Example:
        >>> model = nnblocks.build({"name": "mlp", "in_features": 8, "out_features": 2}, "model")
        >>> result = hybridize(model, torch.randn(64, 8))          # doctest: +SKIP
        >>> result.mode, result.speedup                             # doctest: +SKIP
        ('eager', 0.93)
        >>> fast = result.model                                     # doctest: +SKIP
    """
    _check_options(mode, warmup, repeats, min_speedup)
    if mode == "eager":
        return HybridResult("eager", model, reason="mode='eager'")
    args = as_args(example_inputs)
    name = describe_model(model)
    with eval_mode(model), torch.no_grad():
        expected = model(*args)  # an error here is the model's own: let it through
    checked = _compile_checked(
        model, args, expected, mode=mode, name=name, compile_fn=compile_fn or torch.compile,
        compile_options=compile_options, rtol=rtol, atol=atol,
    )  # fmt: skip
    if isinstance(checked, HybridResult):
        return checked
    compiled, compile_s, max_diff = checked
    if mode == "compile":
        return HybridResult(
            "compile", compiled, compile_s=compile_s, max_diff=max_diff, reason="mode='compile'"
        )
    return _timed_choice(
        model, compiled, args, name=name, compile_s=compile_s, max_diff=max_diff,
        with_backward=_wants_backward(model, args, loss_fn, backward), loss_fn=loss_fn,
        targets=tuple(targets), warmup=warmup, repeats=repeats, min_speedup=min_speedup,
        time_fn=time_fn or measure,
    )  # fmt: skip


def _timed_choice(
    model: nn.Module,
    compiled: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    name: str,
    compile_s: float,
    max_diff: float,
    with_backward: bool,
    loss_fn: Callable[..., torch.Tensor] | None,
    targets: tuple[Any, ...],
    warmup: int,
    repeats: int,
    min_speedup: float,
    time_fn: TimeFn,
) -> HybridResult:
    """``"auto"``: time both versions, interleaved, and keep the compiled one if it pays."""
    timings = _time_both(
        model, compiled, args, loss_fn=loss_fn, targets=targets, backward=with_backward,
        warmup=warmup, repeats=repeats, time_fn=time_fn,
    )  # fmt: skip
    eager_s, compiled_s = float(timings["eager"]), float(timings["compiled"])
    chosen = choose(eager_s, compiled_s, min_speedup)
    ratio = eager_s / compiled_s if compiled_s > 0 else float("inf")
    reason = (
        f"compiled is x{ratio:.2f} the speed of eager"
        if chosen == "compile"
        else f"compiled is x{ratio:.2f} the speed of eager, below min_speedup={min_speedup}"
    )
    result = HybridResult(
        chosen, compiled if chosen == "compile" else model, eager_s=eager_s,
        compiled_s=compiled_s, compile_s=compile_s, max_diff=max_diff,
        backward=with_backward, reason=reason,
    )  # fmt: skip
    log.info("hybridize %s: %s", name, result)
    return result


def _compile_checked(
    model: nn.Module,
    args: tuple[Any, ...],
    expected: Any,
    *,
    mode: str,
    name: str,
    compile_fn: Callable[..., Callable[..., Any]],
    compile_options: Mapping[str, Any] | None,
    rtol: float | None,
    atol: float | None,
) -> HybridResult | tuple[Callable[..., Any], float, float]:
    """Compile and compare with eager on the example.

    Returns:
        ``(compiled, compile_s, max_diff)``; or, in ``"auto"`` mode, the eager fallback
        when compiling failed or disagreed.

    Raises:
        ExportError, EquivalenceError: the same failures in ``"compile"`` mode.
    """
    try:
        compiled = compile_fn(model, **dict(compile_options or {}))
        actual, compile_s = _first_call(model, compiled, args)
    except Exception as exc:  # dynamo and inductor raise many types; all mean "cannot compile"
        if mode == "compile":
            raise ExportError(
                f"hybridize: torch.compile failed on {name}: {_first_line(exc)}. Expected a "
                "model torch.compile can trace; run it eagerly (mode='eager') or see "
                "https://pytorch.org/docs/stable/torch.compiler_troubleshooting.html"
            ) from exc
        return _fallback(model, f"torch.compile failed: {_first_line(exc)}")
    comparison = compare(expected, actual, rtol=rtol, atol=atol, what="compiled")
    if not comparison.ok:
        message = (
            f"hybridize: compiled {name} disagrees with eager on the example: "
            f"{comparison.problem}. Largest difference {comparison.max_diff:.3g}, in "
            f"{comparison.where}."
        )
        if mode == "compile":
            raise EquivalenceError(
                message + " Pass looser rtol/atol if this is rounding, or keep mode='eager'.",
                max_diff=comparison.max_diff,
                where=comparison.where,
            )
        return _fallback(model, message, max_diff=comparison.max_diff)
    return compiled, compile_s, comparison.max_diff


def _check_options(mode: str, warmup: int, repeats: int, min_speedup: float) -> None:
    if mode not in _MODES:
        raise SpecError(
            f"Received an invalid value for `mode`: expected one of {', '.join(_MODES)}. "
            f"Received: mode={mode!r}",
            path="hybridize",
        )
    for option, value, minimum in (("warmup", warmup, 1), ("repeats", repeats, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise SpecError(
                f"Received an invalid value for `{option}`: expected an integer >= {minimum}. "
                f"Received: {option}={value!r}",
                path="hybridize",
            )
    if not isinstance(min_speedup, (int, float)) or not min_speedup > 0:
        raise SpecError(
            "Received an invalid value for `min_speedup`: expected a positive number. "
            f"Received: min_speedup={min_speedup!r}",
            path="hybridize",
        )


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}"


def _fallback(model: nn.Module, reason: str, *, max_diff: float | None = None) -> HybridResult:
    log.warning("hybridize keeps %s eager: %s", describe_model(model), reason)
    return HybridResult("eager", model, max_diff=max_diff, reason=reason)


def _first_call(
    model: nn.Module, compiled: Callable[..., Any], args: tuple[Any, ...]
) -> tuple[Any, float]:
    """The compiled output in eval mode without gradients, and how long the call took.

    The first call traces and generates code, so its time is the compile time. Eval mode
    turns dropout off, so the output can be compared with the eager one.
    """
    with eval_mode(model), torch.no_grad():
        start = time.perf_counter()
        actual = compiled(*args)
        synchronizer(devices_of(model, args))()
    return actual, time.perf_counter() - start


def _wants_backward(
    model: nn.Module, args: tuple[Any, ...], loss_fn: Any, backward: bool | None
) -> bool:
    if backward is not None:
        return backward
    if not model.training:
        return False
    inputs_need_grad = any(isinstance(a, torch.Tensor) and a.requires_grad for a in args)
    params_need_grad = any(p.requires_grad for p in model.parameters())
    return loss_fn is not None or inputs_need_grad or params_need_grad


def _loss(output: Any, loss_fn: Any, targets: tuple[Any, ...]) -> torch.Tensor:
    if loss_fn is not None:
        return loss_fn(output, *targets)
    floats = [
        leaf.float().sum()
        for _, leaf in flatten(output)
        if isinstance(leaf, torch.Tensor) and leaf.is_floating_point() and leaf.requires_grad
    ]
    if not floats:
        raise SpecError(
            "hybridize: the model's output has no floating-point tensor that requires grad, "
            "so there is no backward pass to time. Pass loss_fn= or backward=False.",
            path="hybridize",
        )
    return torch.stack(floats).sum()


def _time_both(
    model: nn.Module,
    compiled: Callable[..., Any],
    args: tuple[Any, ...],
    *,
    loss_fn: Any,
    targets: tuple[Any, ...],
    backward: bool,
    warmup: int,
    repeats: int,
    time_fn: TimeFn,
) -> Mapping[str, float]:
    devices = devices_of(model, args)

    def step_of(fn: Callable[..., Any]) -> Callable[[], Any]:
        if not backward:

            def forward() -> Any:
                with torch.no_grad():
                    return fn(*args)

            return forward

        def train_step() -> None:
            model.zero_grad(set_to_none=True)
            _loss(fn(*args), loss_fn, targets).backward()

        return train_step

    steps = {"eager": step_of(model), "compiled": step_of(compiled)}
    with kept_training_state(model, devices):
        return time_fn(steps, warmup=warmup, repeats=repeats, sync=synchronizer(devices))
