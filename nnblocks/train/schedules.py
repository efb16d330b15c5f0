"""Schedules: values as a function of training progress ``pct`` in [0, 1].

A schedule is a small callable object, ``schedule(pct) -> value``, that also reports its
configuration (``config()``, plain data) so a checkpoint can record it. Learning-rate
schedules return a *factor* of each parameter group's peak ``base_lr``; momentum schedules
return the momentum itself.

Built-ins: ``Constant``, ``Linear``, ``Cosine``, ``Exponential``, ``OneCycle`` (Smith &
Topin 2017, "Super-Convergence"; cosine phases as in fastai) and ``OneCycleMomentum``.
"""

from __future__ import annotations

import math
from typing import Any

from nnblocks.errors import TrainingError


def _cos(start: float, end: float, pct: float) -> float:
    return end + (start - end) * (1 + math.cos(math.pi * pct)) / 2


class Schedule:
    """Base class: ``__call__(pct)`` and ``config()``."""

    def __call__(self, pct: float) -> float:
        raise NotImplementedError

    def config(self) -> dict[str, Any]:
        return {"name": type(self).__name__, **vars(self)}

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class Constant(Schedule):
    """Always ``value`` (1.0: the peak learning rate throughout)."""

    def __init__(self, value: float = 1.0):
        self.value = value

    def __call__(self, pct: float) -> float:
        return self.value


class Linear(Schedule):
    """From ``start`` to ``end`` in a straight line."""

    def __init__(self, start: float = 1.0, end: float = 0.0):
        self.start, self.end = start, end

    def __call__(self, pct: float) -> float:
        return self.start + (self.end - self.start) * pct


class Cosine(Schedule):
    """Half a cosine from ``start`` to ``end`` (Loshchilov & Hutter 2017, SGDR), after an
    optional linear warm-up over the first ``warmup`` fraction."""

    def __init__(self, start: float = 1.0, end: float = 0.0, warmup: float = 0.0):
        self.start, self.end, self.warmup = start, end, warmup

    def __call__(self, pct: float) -> float:
        if pct < self.warmup:
            return self.start * pct / self.warmup
        span = 1.0 - self.warmup
        return _cos(self.start, self.end, (pct - self.warmup) / span if span > 0 else 1.0)


class Exponential(Schedule):
    """Geometric from ``start`` to ``end`` (both > 0)."""

    def __init__(self, start: float = 1.0, end: float = 1e-2):
        if start <= 0 or end <= 0:
            raise TrainingError(
                f"Exponential schedule needs start, end > 0. Received: {start}, {end}"
            )
        self.start, self.end = start, end

    def __call__(self, pct: float) -> float:
        return self.start * (self.end / self.start) ** pct


class OneCycle(Schedule):
    """One cycle: warm up from ``1/div`` of the peak to the peak over ``pct_start``, then
    anneal to ``1/(div * final_div)`` of it, both with cosine (Smith & Topin 2017)."""

    def __init__(self, pct_start: float = 0.25, div: float = 25.0, final_div: float = 1e4):
        if not 0.0 <= pct_start < 1.0:
            raise TrainingError(f"one-cycle pct_start must be in [0, 1). Received: {pct_start}")
        self.pct_start, self.div, self.final_div = pct_start, div, final_div

    def __call__(self, pct: float) -> float:
        if pct < self.pct_start:
            return _cos(1.0 / self.div, 1.0, pct / self.pct_start)
        rest = (pct - self.pct_start) / (1.0 - self.pct_start)
        return _cos(1.0, 1.0 / (self.div * self.final_div), rest)


class OneCycleMomentum(Schedule):
    """Momentum mirroring ``OneCycle``: high -> low during warm-up -> high again."""

    def __init__(self, pct_start: float = 0.25, high: float = 0.95, low: float = 0.85):
        self.pct_start, self.high, self.low = pct_start, high, low

    def __call__(self, pct: float) -> float:
        if pct < self.pct_start:
            return _cos(self.high, self.low, pct / self.pct_start)
        return _cos(self.low, self.high, (pct - self.pct_start) / (1.0 - self.pct_start))


SCHEDULES: dict[str, type[Schedule]] = {
    "constant": Constant,
    "linear": Linear,
    "cosine": Cosine,
    "exponential": Exponential,
    "one_cycle": OneCycle,
    "one_cycle_momentum": OneCycleMomentum,
}


def make_schedule(spec: Any) -> Schedule:
    """A schedule from a name, ``{"name": ..., **options}``, a Schedule or a function.

    Raises:
        TrainingError: an unknown name or bad options.
    """
    if isinstance(spec, Schedule):
        return spec
    if isinstance(spec, str):
        name, options = spec, {}
    elif isinstance(spec, dict) and "name" in spec:
        name, options = spec["name"], {k: v for k, v in spec.items() if k != "name"}
    elif callable(spec):
        return _Function(spec)
    else:
        raise TrainingError(
            f"Received an invalid schedule: expected a name ({', '.join(SCHEDULES)}), a dict "
            f"with `name`, a Schedule or a function of pct. Received: {spec!r:.80}"
        )
    key = name.lower().replace("-", "_")
    if key not in SCHEDULES:
        raise TrainingError(f"Received an unknown schedule `{name}`. Known: {', '.join(SCHEDULES)}")
    try:
        return SCHEDULES[key](**options)
    except TypeError as exc:
        raise TrainingError(f"schedule `{name}`: {exc}") from exc


class _Function(Schedule):
    def __init__(self, fn: Any):
        self.fn = fn

    def __call__(self, pct: float) -> float:
        return float(self.fn(pct))

    def config(self) -> dict[str, Any]:
        return {"name": getattr(self.fn, "__name__", "function")}
