"""`watch_numerics`: name the first module where a NaN or Inf appeared, forward or backward.

PyTorch's anomaly mode names the failing autograd op and costs about 3x; this names the
module, as ``model.named_modules()`` spells it, and costs little:

- Forward: when a module returns, each floating output costs one reduction, ``t.sum()``,
  kept on the device (no sync). A sum is non-finite exactly when some element is NaN or Inf
  (or when it overflows, a false alarm that the exact check below rules out). When the
  outermost call returns, one ``isfinite`` over all the sums and one host sync find the
  first module, in the order modules finished, whose output is bad. Only then are inputs
  looked at, exactly: if that module's inputs were finite it produced the NaN; if not, the
  nearest enclosing module with finite inputs produced it in its own code (between its
  submodules); if even the model's input is bad, the message says so.
- Backward: each module's inputs that need a gradient are handed to it as fresh views, so a
  hook sees the gradient that flows out through *this* module alone (a hook on the shared
  tensor would see the sum over all its uses). Those gradients and the parameters'
  gradients are reduced as they appear; gradients arriving at module outputs are only kept.
  At the end of the backward pass (an engine callback) one sync finds the first bad
  gradient in time; if the gradient arriving at that module's output was finite, the
  module's backward produced the NaN, otherwise the kit walks back to the first bad arrival
  and blames the enclosing module whose backward was running.

Cost when nothing goes wrong: a reduction per module output, per module input gradient and
per parameter gradient; a view and a hook per input that needs a gradient; two host syncs
per step. The tensors a step passes between modules (and, during backward, the gradients)
are kept until the step's check, for the exact checks and the statistics in the message.
"""

from __future__ import annotations

import dataclasses
import math
import sys
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from nnblocks.errors import NumericsError

__all__ = ["watch_numerics", "NumericsWatch", "tensor_stats"]

_HALF = (torch.float16, torch.bfloat16)


@dataclasses.dataclass(eq=False)
class _Call:
    """One call of one module during the forward pass."""

    module: nn.Module
    parent: _Call | None
    inputs: list[torch.Tensor] | None = None  # held until the forward check
    entered: bool = False  # backward: the gradient at an output arrived
    exited: bool = False  # backward: the gradient at an input left


def _floats(value: Any, depth: int = 0) -> Iterator[torch.Tensor]:
    """Floating-point tensors in a value (tensors, tuples, lists, dicts; two levels deep)."""
    if isinstance(value, torch.Tensor):
        if value.is_floating_point():
            yield value
    elif depth < 2 and isinstance(value, (tuple, list)):
        for v in value:
            yield from _floats(v, depth + 1)
    elif depth < 2 and isinstance(value, dict):
        for v in value.values():
            yield from _floats(v, depth + 1)


def _total(t: torch.Tensor) -> torch.Tensor:
    return t.sum(dtype=torch.float32) if t.dtype in _HALF else t.sum()


def tensor_stats(t: torch.Tensor | None) -> str:
    """``"[2, 7, 64] float32: 3 NaN, 0 Inf; finite min -1.2 max 3.4 mean 0.01 std 0.98"``."""
    if t is None:
        return "None"
    t = t.detach()
    head = f"{list(t.shape)} {str(t.dtype).removeprefix('torch.')}"
    if not t.is_floating_point() or t.numel() == 0:
        return head
    x = t.double()
    nan, inf = int(torch.isnan(x).sum()), int(torch.isinf(x).sum())
    finite = x[torch.isfinite(x)]
    stats = f"{head}: {nan} NaN, {inf} Inf"
    if finite.numel():
        std = float(finite.std()) if finite.numel() > 1 else 0.0
        stats += (
            f"; finite min {float(finite.min()):.4g} max {float(finite.max()):.4g} "
            f"mean {float(finite.mean()):.4g} std {std:.4g}"
        )
    return stats


class NumericsWatch:
    """Hooks on every module of ``model`` that raise `NumericsError` at the first NaN or Inf.

    Use it as a context manager (`watch_numerics`) or call `attach` and `detach` (what the
    Learner does with ``debug=True``).

    Args:
        model: any ``nn.Module``.
        backward: also watch gradients (module inputs and outputs, parameters).

    Raises (from the model's forward, or from ``loss.backward()``):
        NumericsError: ``.module_path`` names the first module where a non-finite value
            appeared (the model's class name for the root), ``.phase`` is ``"forward"`` or
            ``"backward"``; the message gives the statistics of the module's inputs.
    """

    def __init__(self, model: nn.Module, *, backward: bool = True):
        self.model = model
        self.backward = backward
        self._paths: dict[int, str] = {}
        for name, module in model.named_modules():
            self._paths.setdefault(id(module), name)
        self._handles: list[Any] = []
        self._active = False
        self._reset_forward()
        self._reset_backward()

    # ---- lifecycle ----

    def attach(self) -> NumericsWatch:
        """Register the hooks (idempotent)."""
        if self._active:
            return self
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._enter, with_kwargs=True))
            self._handles.append(
                module.register_forward_hook(self._leave, with_kwargs=True, always_call=True)
            )
        if self.backward:
            self._watch_parameters()
        self._active = True
        return self

    def detach(self) -> None:
        """Remove every hook; tensors hooked earlier stop reporting."""
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._active = False
        self._reset_forward()
        self._reset_backward()

    def __enter__(self) -> NumericsWatch:
        return self.attach()

    def __exit__(self, *exc: object) -> None:
        self.detach()

    def path(self, module: nn.Module) -> str:
        """The module's name as ``named_modules`` spells it; the class name for the root."""
        return self._paths.get(id(module)) or type(module).__name__

    # ---- forward ----

    def _reset_forward(self) -> None:
        self._depth = 0
        self._stack: list[_Call] = []
        self._calls: list[_Call] = []
        self._sums: list[torch.Tensor] = []
        self._outputs: list[tuple[_Call, torch.Tensor, int]] = []  # (call, tensor, index in _sums)
        self._memo: dict[tuple[int, int], int] = {}

    def _enter(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not self._active:
            return None
        self._depth += 1
        call = _Call(module, self._stack[-1] if self._stack else None)
        call.inputs = [*_floats(args), *_floats(kwargs)] if (args or kwargs) else []
        self._calls.append(call)
        self._stack.append(call)
        if self.backward and torch.is_grad_enabled():
            for t in call.inputs:
                if t.requires_grad:
                    return self._hook_inputs(call, args, kwargs)
        return None

    def _hook_inputs(
        self, call: _Call, args: tuple[Any, ...], kwargs: dict[str, Any]
    ) -> tuple[tuple[Any, ...], dict[str, Any]]:
        # A fresh view is used by this module alone, so its gradient is the one flowing out
        # through this module (a hook on the shared tensor would see the sum of all uses).
        views: dict[int, torch.Tensor] = {}

        def swap(v: Any) -> Any:
            if not (isinstance(v, torch.Tensor) and v.requires_grad and v.is_floating_point()):
                return v
            if id(v) not in views:  # `q is k is v` stays true for attention fast paths
                view = v.view_as(v)
                view.register_hook(self._input_grad_hook(call, len(views)))
                views[id(v)] = view
            return views[id(v)]

        return tuple(swap(a) for a in args), {k: swap(v) for k, v in kwargs.items()}

    def _leave(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        if not self._active or not self._stack:
            return
        call = self._stack.pop()
        self._depth -= 1
        error = sys.exc_info()[1]
        if error is not None:  # the forward raised: add the culprit to its error, if any
            if self._depth == 0:
                self._note_on_error(error)
            return
        watch_grads = self.backward and torch.is_grad_enabled()
        for t in _floats(output):
            key = (id(t), t._version)
            index = self._memo.get(key)
            if index is None:  # a tensor already checked (a child's output passed on) is not
                self._sums.append(_total(t.detach()))
                index = self._memo[key] = len(self._sums) - 1
            self._outputs.append((call, t, index))  # holding t keeps its id unique this step
            if watch_grads and t.requires_grad:
                t.register_hook(self._output_grad_hook(call))
        if self._depth == 0:
            self._check_forward()

    def _first_bad_output(self) -> tuple[_Call, torch.Tensor] | None:
        if not self._sums:
            return None
        finite = torch.isfinite(torch.stack(self._sums)).tolist()  # the one host sync
        for call, t, index in self._outputs:
            if not finite[index] and not _finite(t):  # exact: rules out an overflowed sum
                return call, t
        return None

    def _check_forward(self) -> None:
        calls = self._calls
        try:
            bad = self._first_bad_output()
            if bad is not None:
                raise self._forward_error(*bad)
        finally:
            self._reset_forward()
            for call in calls:
                call.inputs = None  # release the step's tensors

    def _note_on_error(self, exc: BaseException) -> None:
        calls = self._calls
        try:
            bad = self._first_bad_output()
            if bad is not None and hasattr(exc, "add_note"):
                exc.add_note(f"nnblocks.watch_numerics: {self._forward_error(*bad)}")
        finally:
            self._reset_forward()
            for call in calls:
                call.inputs = None

    def _forward_error(self, call: _Call, output: torch.Tensor) -> NumericsError:
        """The culprit for the first bad output (``output`` of ``call``): see the module doc."""
        first = call
        while call.inputs is not None and not all(_finite(t) for t in call.inputs):
            if call.parent is None:
                lines = [
                    f"NaN/Inf in the forward pass: the input of `{self.path(call.module)}` is "
                    "already non-finite (the batch, or code before the model, holds NaN/Inf)."
                ]
                lines += [f"  input {i}: {tensor_stats(t)}" for i, t in enumerate(call.inputs)]
                return NumericsError(
                    "\n".join(lines), module_path=self.path(call.module), phase="forward"
                )
            call = call.parent
        culprit = call.module
        if call is first:
            where = f"the output of `{self.path(culprit)}` ({type(culprit).__name__}) is non-finite"
        else:
            where = (
                f"`{self.path(culprit)}` ({type(culprit).__name__}) produced it in its own code "
                f"(the first bad output is that of `{self.path(first.module)}`, whose input "
                "was already non-finite)"
            )
        lines = [f"NaN/Inf in the forward pass: {where}, its inputs being finite."]
        lines += [f"  input {i}: {tensor_stats(t)}" for i, t in enumerate(call.inputs or [])]
        lines.append(f"  first bad output: {tensor_stats(output)}")
        lines += self._bad_parameters(culprit)
        return NumericsError("\n".join(lines), module_path=self.path(culprit), phase="forward")

    def _bad_parameters(self, module: nn.Module) -> list[str]:
        bad = [
            f"  parameter `{n}`: {tensor_stats(p)}"
            for n, p in module.named_parameters(recurse=False)
            if not _finite(p)
        ]
        if bad:
            bad.insert(0, "  its own parameters are non-finite (a bad optimizer step before?):")
        return bad

    # ---- backward ----

    def _reset_backward(self) -> None:
        # (kind, who, index in _grad_sums, (shape, dtype), input position)
        self._events: list[tuple[str, Any, int, tuple[Any, ...], int]] = []
        self._grad_sums: list[torch.Tensor] = []
        self._last_grad: torch.Tensor | None = None
        self._queued = False

    def _watch_parameters(self) -> None:
        owners: dict[int, tuple[nn.Module, str]] = {}
        for mname, module in self.model.named_modules():
            for pname, p in module.named_parameters(recurse=False):
                owners.setdefault(id(p), (module, f"{mname}.{pname}" if mname else pname))
        for p in self.model.parameters():
            if p.requires_grad:
                # A hook on the leaf sees this backward's gradient before it is added to
                # .grad, so a NaN left in .grad by an earlier step is not blamed again.
                self._handles.append(p.register_hook(self._param_hook(owners[id(p)])))

    def _record(self, kind: str, who: Any, grad: torch.Tensor, position: int) -> None:
        if not self._queued:
            self._queued = True
            torch.autograd.Variable._execution_engine.queue_callback(self._check_backward)
        # Only the reduction and the shape are kept: holding the gradients would stop autograd
        # from freeing them early or stealing them into .grad (a copy per parameter). The
        # last one is kept so that hooks of nested modules on one tensor share a reduction.
        if grad is not self._last_grad:
            self._grad_sums.append(_total(grad.detach()))
            self._last_grad = grad
        index = len(self._grad_sums) - 1
        self._events.append((kind, who, index, (tuple(grad.shape), grad.dtype), position))

    def _output_grad_hook(self, call: _Call) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if self._active and grad is not None:
                self._record("out", call, grad, 0)

        return hook

    def _input_grad_hook(self, call: _Call, position: int) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if self._active and grad is not None:
                self._record("in", call, grad, position)

        return hook

    def _param_hook(self, owner: tuple[nn.Module, str]) -> Any:
        def hook(grad: torch.Tensor) -> None:
            if self._active and grad is not None:
                self._record("param", owner, grad, 0)

        return hook

    def _check_backward(self) -> None:
        events, sums = self._events, self._grad_sums
        self._reset_backward()
        if not sums:
            return
        values = torch.stack(sums).tolist()  # the one host sync
        entered: set[int] = set()
        exited: set[int] = set()
        for kind, who, index, meta, position in events:
            value = values[index]
            if kind == "out":
                if not math.isfinite(value):
                    raise self._from_above(who, meta, value, entered, exited)
                entered.add(id(who))
                continue
            if kind == "in":
                exited.add(id(who))
            if not math.isfinite(value):
                module, what = (
                    (who.module, f"the gradient w.r.t. its input {position}")
                    if kind == "in"
                    else (who[0], f"the gradient of parameter `{who[1]}`")
                )
                raise self._backward_error(module, what, meta, value)

    def _backward_error(
        self, module: nn.Module, what: str, meta: tuple[Any, ...], value: float
    ) -> NumericsError:
        lines = [
            f"NaN/Inf in the backward pass at `{self.path(module)}` ({type(module).__name__}): "
            f"{what} became non-finite while the gradient arriving at its output was finite.",
            f"  bad gradient: {_describe(meta, value)}",
        ]
        lines += self._bad_parameters(module)
        return NumericsError("\n".join(lines), module_path=self.path(module), phase="backward")

    def _from_above(
        self, call: _Call, meta: tuple[Any, ...], value: float, entered: set[int], exited: set[int]
    ) -> NumericsError:
        """A gradient arrived non-finite at ``call``'s output: the enclosing module whose
        backward was running (its own code, between its submodules) produced it, or, with
        none running, the loss did."""
        parent = call.parent
        while parent is not None and not (id(parent) in entered and id(parent) not in exited):
            parent = parent.parent
        if parent is not None:
            return self._backward_error(
                parent.module,
                f"the gradient it passes back to `{self.path(call.module)}` (its own code)",
                meta,
                value,
            )
        root = call
        while root.parent is not None:
            root = root.parent
        lines = [
            "NaN/Inf in the backward pass: the gradient arriving at the output of "
            f"`{self.path(root.module)}` is already non-finite (it comes from the loss or code "
            "outside the model).",
            f"  gradient: {_describe(meta, value)}",
        ]
        return NumericsError("\n".join(lines), module_path=self.path(root.module), phase="backward")


def _describe(meta: tuple[Any, ...], value: float) -> str:
    shape, dtype = meta
    # a NaN sum means a NaN, or Infs of both signs; an infinite sum means Infs, no NaN
    found = "NaN or Inf" if math.isnan(value) else "Inf, no NaN"
    return f"{list(shape)} {str(dtype).removeprefix('torch.')}, holds {found}"


def _finite(t: torch.Tensor) -> bool:
    return bool(torch.isfinite(t).all())


def watch_numerics(model: nn.Module, *, backward: bool = True) -> NumericsWatch:
    """Watch ``model`` for NaN and Inf; raise `NumericsError` naming the first module.

    Args:
        model: any ``nn.Module`` (not only nnblocks models).
        backward: also watch gradients (default True).

    Returns:
        A `NumericsWatch`, a context manager; hooks are removed on exit.

    Raises:
        NumericsError: from the forward call or from ``backward()``, with ``.module_path``
            (``named_modules`` spelling; the class name for the root) and ``.phase``.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> model = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 4))
        >>> with torch.no_grad():
        ...     model[1].bias[0] = float("nan")  # as after a bad optimizer step
        >>> with watch_numerics(model):
        ...     model(torch.randn(2, 4))
        Traceback (most recent call last):
        ...
        nnblocks.errors.NumericsError: NaN/Inf in the forward pass: the output of `1` (Linear) is non-finite, its inputs being finite.
        ...
    """
    return NumericsWatch(model, backward=backward)
