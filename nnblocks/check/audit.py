"""`audit_reuse`: find modules used from more than one place, and judge each use.

A module with parameters or running statistics should appear at one call site only, unless
the sharing is declared (DESIGN.md). Calling one ``nn.Linear`` from two places shares its
weights silently, which is rarely meant; reusing a BatchNorm mixes the running statistics of
different feature streams; reusing a ReLU is harmless. The audit runs one forward pass with
hooks on every module and records, for each call, the caller's code location (file, line and
bytecode offset, so ``f(f(x))`` on one line is two places) and the enclosing module call.

Rules, in order, for a module called more than once:

1. all its calls happen inside distinct calls of one reused parent: reported with the parent;
2. registered under two or more names, or called from two or more places: **reuse**:
   learnable parameters -> fail unless declared; running statistics -> warn;
   parameter-free -> pass;
3. called repeatedly from one place (a loop): a recurrent module (``nn.RNNBase``,
   ``nn.RNNCellBase``) stepping through time -> pass; otherwise the loop shares weights on
   purpose or by accident -> warn for parameters or statistics, pass for parameter-free.

Also, without running anything: the same ``Parameter`` held by two different modules (weight
tying) -> fail unless declared. And while running: a module that keeps a tensor derived from
its input as an attribute or updates a buffer (state carried between unrelated calls), or an
RNN whose hidden output from one place feeds its call at another -> warn.

Declaring sharing: a model (or any submodule) sets ``tied_parameters``, a list of tuples of
parameter names (or module names) that are shared on purpose, relative to itself::

    class TiedLM(nn.Module):
        tied_parameters = [("embedding.weight", "head.weight")]
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from nnblocks.check.report import Record, Report

__all__ = ["audit_reuse", "declared_ties"]

_STATS = ("running_mean", "running_var", "num_batches_tracked")
_MODULE_PY = os.path.join("torch", "nn", "modules", "module.py")
_THIS = os.path.abspath(__file__)


@dataclasses.dataclass
class _Call:
    module: int  # id of the module
    parent: _Call | None
    site: tuple[str, int, int]  # file, line, column of the calling expression
    hx: set[int] = dataclasses.field(default_factory=set)  # ids of hidden-state inputs (RNN)
    hidden_out: set[int] = dataclasses.field(default_factory=set)
    attrs: dict[str, int] = dataclasses.field(default_factory=dict)
    versions: dict[str, int] = dataclasses.field(default_factory=dict)


def _call_site() -> tuple[str, int, int]:
    frame = sys._getframe(2)
    while frame is not None and (
        frame.f_code.co_filename.endswith(_MODULE_PY) or frame.f_code.co_filename == _THIS
    ):
        frame = frame.f_back  # type: ignore[assignment]
    if frame is None:
        return ("?", 0, 0)
    return (frame.f_code.co_filename, frame.f_lineno, _column(frame.f_code, frame.f_lasti))


def _column(code: Any, lasti: int) -> int:
    """The column of the call expression (Python 3.11+), else the bytecode offset."""
    positions = getattr(code, "co_positions", None)
    if positions is None:
        return lasti
    for i, (_, _, col, _) in enumerate(positions()):
        if i == lasti // 2:
            return col + 1 if col is not None else lasti  # 1-based, as editors count
    return lasti


def _tensor_attrs(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in vars(module).items() if isinstance(v, torch.Tensor)}


def _ids(value: Any) -> set[int]:
    if isinstance(value, torch.Tensor):
        return {id(value)}
    if isinstance(value, (tuple, list)):
        return set().union(*(_ids(v) for v in value)) if value else set()
    return set()


class _Tracer:
    """Forward hooks that record every module call with its caller and its place."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.calls: dict[int, list[_Call]] = defaultdict(list)
        self.stack: list[_Call] = []
        self.leaks: dict[int, list[str]] = defaultdict(list)
        self.handles: list[Any] = []

    def __enter__(self) -> _Tracer:
        seen = set()
        for module in self.model.modules():
            if id(module) in seen:
                continue
            seen.add(id(module))
            self.handles.append(module.register_forward_pre_hook(self._pre, with_kwargs=True))
            self.handles.append(
                module.register_forward_hook(self._post, with_kwargs=True, always_call=True)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles.clear()

    def _pre(self, module: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        call = _Call(id(module), self.stack[-1] if self.stack else None, _call_site())
        call.attrs = {k: id(v) for k, v in _tensor_attrs(module).items()}
        call.versions = {
            k: b._version for k, b in module.named_buffers(recurse=False) if k not in _STATS
        }
        if isinstance(module, (nn.RNNBase, nn.RNNCellBase)):
            call.hx = _ids(args[1] if len(args) > 1 else kwargs.get("hx"))
        self.calls[id(module)].append(call)
        self.stack.append(call)

    def _post(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        call = self.stack.pop() if self.stack else None
        if call is None or call.module != id(module):
            return
        if isinstance(module, nn.RNNBase) and isinstance(output, tuple) and len(output) > 1:
            call.hidden_out = _ids(output[1])
        elif isinstance(module, nn.RNNCellBase):
            call.hidden_out = _ids(output)
        for k, v in _tensor_attrs(module).items():
            if call.attrs.get(k) != id(v) and v.grad_fn is not None:
                self.leaks[id(module)].append(f"attribute `{k}` set from the input")
        for k, b in module.named_buffers(recurse=False):
            if k in call.versions and b._version != call.versions[k]:
                self.leaks[id(module)].append(f"buffer `{k}` updated in place")


def declared_ties(model: nn.Module) -> list[tuple[str, ...]]:
    """Every ``tied_parameters`` declaration in the model, as full names from the root."""
    ties = []
    for prefix, module in model.named_modules(remove_duplicate=False):
        declared = getattr(module, "tied_parameters", None)
        if not declared:
            continue
        for group in declared:
            names = [group] if isinstance(group, str) else list(group)
            ties.append(tuple(f"{prefix}.{n}" if prefix else n for n in names))
    return list(dict.fromkeys(ties))


def _covered(name: str, group: tuple[str, ...]) -> bool:
    return any(name == g or name.startswith(g + ".") for g in group)


def _declared(names: Iterable[str], ties: list[tuple[str, ...]]) -> bool:
    """True when one declaration covers every name (by parameter or module name)."""
    names = list(names)
    return any(all(_covered(n, group) for n in names) for group in ties)


class _Model:
    """Names and facts about the modules of a model, looked up by module id."""

    def __init__(self, model: nn.Module):
        self.model = model
        self.names: dict[int, list[str]] = defaultdict(list)
        self.modules: dict[int, nn.Module] = {}
        for name, module in model.named_modules(remove_duplicate=False):
            self.names[id(module)].append(name)
            self.modules[id(module)] = module
        self.ties = declared_ties(model)

    def path(self, key: int) -> str:
        name = self.names[key][0]
        return name or type(self.model).__name__

    def kind(self, key: int) -> str:
        """'params', 'stats' or 'free': what reusing this module would share."""
        module = self.modules[key]
        for owner in module.modules():
            stats = any(n in _STATS[:2] for n, _ in owner.named_buffers(recurse=False))
            own = [p for p in owner.parameters(recurse=False) if p.requires_grad]
            if own and not stats:
                return "params"
        if any(n.rsplit(".", 1)[-1] in _STATS[:2] for n, _ in module.named_buffers()):
            return "stats"
        if any(p.requires_grad for p in module.parameters()):
            return "params"
        return "free"

    def param_names(self, key: int) -> list[str]:
        out = []
        for prefix in self.names[key]:
            for n, _ in self.modules[key].named_parameters(remove_duplicate=False):
                out.append(f"{prefix}.{n}" if prefix else n)
        return out

    def declared(self, key: int) -> bool:
        names = self.names[key]
        return _declared(names, self.ties) or (
            bool(self.param_names(key)) and _declared(self.param_names(key), self.ties)
        )


def _where(site: tuple[str, int, int], sites: list[tuple[str, int, int]] | None = None) -> str:
    """``file.py:12``, or ``file.py:12:col`` when another place shares the line."""
    where = f"{os.path.basename(site[0])}:{site[1]}"
    if sites and sum(1 for s in sites if s[:2] == site[:2]) > 1:
        where += f":{site[2]}"
    return where


def audit_reuse(model: nn.Module, *inputs: Any, kwargs: dict[str, Any] | None = None) -> Report:
    """Report every module used from more than one place, judged by the rules of reuse.

    Args:
        model: any ``nn.Module``.
        *inputs: example inputs for one forward pass (``model(*inputs, **kwargs)``). Without
            them only the static checks run (shared Parameter objects, modules registered
            under two names).
        kwargs: keyword inputs for the forward pass.

    Returns:
        A `Report`: ``fail`` for undeclared sharing of learnable parameters, ``warn`` for
        running statistics shared, loops over weights, or state carried between calls,
        ``pass`` for parameter-free reuse and declared ties. The model's parameters,
        buffers and the random state are as they were before the audit.

    Example:
        >>> import torch
        >>> from torch import nn
        >>> shared = nn.Linear(4, 4)
        >>> report = audit_reuse(nn.Sequential(shared, nn.ReLU(), shared), torch.randn(2, 4))
        >>> report.ok, report["0"].status
        (False, 'fail')
    """
    info = _Model(model)
    report = Report(f"audit {type(model).__name__}")
    _static_ties(info, report)
    if not inputs and not kwargs:
        _static_aliases(info, report)
        report.add("forward", "skip", "no example inputs: call sites not traced")
        return report
    tracer = _trace(model, inputs, kwargs or {})
    n_calls = sum(len(c) for c in tracer.calls.values())
    summary = f"traced {n_calls} calls of {len(tracer.calls)} modules"
    report.results.insert(0, Record("forward", "pass", summary))
    _judge_calls(info, tracer, report)
    return report


def _trace(model: nn.Module, inputs: tuple[Any, ...], kwargs: dict[str, Any]) -> _Tracer:
    """One forward pass with hooks; parameters, buffers, attributes and RNG restored after."""
    buffers = {k: b.detach().clone() for k, b in model.named_buffers()}
    attrs = {id(m): dict(vars(m)) for m in model.modules()}
    devices = sorted({p.device.index or 0 for p in model.parameters() if p.device.type == "cuda"})
    try:
        with torch.random.fork_rng(devices=devices), torch.enable_grad(), _Tracer(model) as tracer:
            model(*inputs, **kwargs)
    finally:
        with torch.no_grad():
            for k, b in model.named_buffers():
                if k in buffers:
                    b.copy_(buffers[k])
        for m in model.modules():  # undo state a module kept in plain attributes
            before = attrs.get(id(m), {})
            for k, v in _tensor_attrs(m).items():
                if k not in before:
                    del m.__dict__[k]
                elif before[k] is not v:
                    m.__dict__[k] = before[k]
    return tracer


def _static_ties(info: _Model, report: Report) -> None:
    """The same Parameter object held by different modules (weight tying)."""
    owners: dict[int, list[tuple[str, int]]] = defaultdict(list)
    for mname, module in info.model.named_modules(remove_duplicate=False):
        for pname, p in module.named_parameters(recurse=False):
            owners[id(p)].append((f"{mname}.{pname}" if mname else pname, id(module)))
    for held in owners.values():
        if len({m for _, m in held}) < 2:
            continue  # one module under several names: judged as module reuse
        names = [n for n, _ in held]
        label = " = ".join(names)
        if _declared(names, info.ties):
            report.add(
                label, "pass", "one Parameter in several modules, declared in tied_parameters"
            )
        else:
            report.add(
                label,
                "fail",
                "one Parameter object is held by different modules without a declaration; if "
                f"intended, declare it: tied_parameters = [{tuple(names)!r}]",
            )
    params = {n: p for n, p in info.model.named_parameters(remove_duplicate=False)}
    for group in info.ties:
        found = [n for n in group if n in params]
        unknown = [
            n for n in group if n not in params and not any(k.startswith(n + ".") for k in params)
        ]
        if unknown:
            report.add(
                f"tied_parameters {group}", "warn", f"declared names not in the model: {unknown}"
            )
        elif len(found) == len(group) and len({id(params[n]) for n in found}) > 1:
            report.add(
                f"tied_parameters {group}",
                "warn",
                "declared as tied but they are different Parameter objects: the tie is broken "
                "(a Parameter re-created, or weights loaded into a copy)",
            )


def _static_aliases(info: _Model, report: Report) -> None:
    for key, names in info.names.items():
        if len(names) < 2 or info.kind(key) == "free":
            continue
        status = "pass" if info.declared(key) else "warn"
        report.add(
            info.path(key),
            status,
            f"one module registered as {', '.join(names)}: if called from both, it shares "
            f"{'parameters' if info.kind(key) == 'params' else 'running statistics'}",
        )


def _judge_calls(info: _Model, tracer: _Tracer, report: Report) -> None:
    reused = {key for key, calls in tracer.calls.items() if len(calls) > 1}
    covered: dict[int, list[str]] = defaultdict(list)
    for key in reused:
        parent = _reused_parent(tracer.calls[key], reused)
        if parent is not None:
            covered[parent].append(info.path(key))
    inside = {path for paths in covered.values() for path in paths}
    free = []
    for key in sorted(reused, key=info.path):
        if info.path(key) in inside:
            continue
        if info.kind(key) == "free":
            free.append(info.path(key))
            continue
        _judge_one(info, key, tracer, report, covered)
    if free:
        shown = ", ".join(free[:8]) + (f" and {len(free) - 8} more" if len(free) > 8 else "")
        report.add("parameter_free", "pass", f"parameter-free modules reused (harmless): {shown}")
    for key, reasons in tracer.leaks.items():
        unique = list(dict.fromkeys(reasons))
        report.add(
            info.path(key),
            "warn",
            f"keeps state between calls ({'; '.join(unique)}): unrelated calls see each "
            "other's state; pass state in and out explicitly",
        )
    for key, calls in tracer.calls.items():
        _rnn_chains(info, key, calls, report)


def _reused_parent(calls: list[_Call], reused: set[int]) -> int | None:
    """The reused module whose distinct calls each contain one call of this module, if any."""
    parents = [c.parent for c in calls]
    if any(p is None for p in parents) or len({id(p) for p in parents}) != len(parents):
        return None
    modules = {p.module for p in parents if p is not None}
    if len(modules) == 1 and next(iter(modules)) in reused:
        return next(iter(modules))
    return None


def _stepping(info: _Model, tracer: _Tracer, calls: list[_Call]) -> str | None:
    """The recurrent module stepped in the same enclosing call as this loop, if any: then
    the loop runs once per time step (an RNN decoder without teacher forcing)."""
    parents = {id(c.parent) for c in calls if c.parent is not None}
    for key, others in tracer.calls.items():
        recurrent = isinstance(info.modules[key], (nn.RNNBase, nn.RNNCellBase))
        if recurrent and sum(1 for c in others if id(c.parent) in parents) > 1:
            return info.path(key)
    return None


def _judge_one(
    info: _Model, key: int, tracer: _Tracer, report: Report, covered: dict[int, list[str]]
) -> None:
    calls = tracer.calls[key]
    path, kind, names = info.path(key), info.kind(key), info.names[key]
    sites = list(dict.fromkeys(c.site for c in calls))
    module = info.modules[key]
    what = f"called {len(calls)} times"
    if len(names) > 1:
        what += f"; registered as {', '.join(n or type(info.model).__name__ for n in names)}"
    if len(sites) > 1:
        what += f"; from {len(sites)} places: {', '.join(_where(s, sites) for s in sites)}"
    else:
        what += f" from one place ({_where(sites[0])})"
    what += f" ({type(module).__name__})"
    loop = len(names) == 1 and len(sites) == 1
    if covered.get(key):  # children reused because this module is: reported with it
        what += f"; with its submodules {', '.join(covered[key])}"
    recurrence = _stepping(info, tracer, calls) if loop else None
    if isinstance(module, (nn.RNNBase, nn.RNNCellBase)) and loop:
        report.add(path, "pass", f"recurrent module stepped through time: {what}")
    elif recurrence is not None:
        report.add(path, "pass", f"used once per time step of the recurrent `{recurrence}`: {what}")
    elif info.declared(key):
        report.add(path, "pass", f"shared on purpose (declared in tied_parameters): {what}")
    elif kind == "stats":
        report.add(
            path,
            "warn",
            f"{what}: its running statistics mix every stream it normalises; use one norm per "
            "stream",
        )
    elif loop:
        report.add(
            path,
            "warn",
            f"{what}: a loop shares its weights across iterations; declare it in "
            f"tied_parameters if intended",
        )
    else:
        report.add(
            path,
            "fail",
            f"module with learnable parameters {what}: the places share weights silently. Use "
            "one module per place, or declare the sharing: tied_parameters = "
            f"[({path!r},)]",
        )


def _rnn_chains(info: _Model, key: int, calls: list[_Call], report: Report) -> None:
    """An RNN whose hidden output at one place is fed to its call at another place."""
    if not isinstance(info.modules[key], (nn.RNNBase, nn.RNNCellBase)):
        return
    for i, later in enumerate(calls):
        for earlier in calls[:i]:
            if earlier.hidden_out & later.hx and earlier.site != later.site:
                report.add(
                    info.path(key),
                    "warn",
                    f"the hidden state from the call at {_where(earlier.site)} feeds the call at "
                    f"{_where(later.site)}: state leaks between unrelated sequences",
                )
                return
