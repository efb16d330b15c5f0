"""Optimizers with good defaults: AdamW on fused or foreach kernels, parameter groups,
discriminative learning rates, and no weight decay on biases and norm weights.

A *group* here is a set of parameters that share a learning rate (for fine-tuning: the
pretrained body low, the new head high). Each group becomes one or two torch parameter
groups (with and without weight decay); every torch group remembers its ``base_lr`` (the
peak a schedule scales) and its ``group`` index.
"""

from __future__ import annotations

import fnmatch
import logging
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.errors import TrainingError
from nnblocks.freezing import group_by_patterns

__all__ = ["OPTIMIZERS", "split_groups", "spread_lr", "make_optimizer", "set_lr"]

log = logging.getLogger(__name__)

# name -> (class, default options). betas=(0.9, 0.99): the shorter second-moment memory
# works better with one-cycle schedules (fastai's default, Gugger & Howard 2018).
OPTIMIZERS: dict[str, tuple[type[torch.optim.Optimizer], dict[str, Any]]] = {
    "adamw": (torch.optim.AdamW, {"betas": (0.9, 0.99), "eps": 1e-8}),
    "adam": (torch.optim.Adam, {"betas": (0.9, 0.99), "eps": 1e-8}),
    "sgd": (torch.optim.SGD, {"momentum": 0.9}),
    "radam": (torch.optim.RAdam, {"betas": (0.9, 0.99)}),
    "rmsprop": (torch.optim.RMSprop, {"alpha": 0.99}),
}

GroupSpec = Sequence[str | Sequence[str]] | Callable[[nn.Module], Iterable[Any]] | None


def split_groups(
    model: nn.Module, groups: GroupSpec = None
) -> list[list[tuple[str, nn.Parameter]]]:
    """Split the model's parameters into groups of ``(name, parameter)``.

    Args:
        model: the module.
        groups: ``None`` (one group); a list whose items are glob patterns (or lists of
            patterns) over parameter names, ``["encoder.*", "decoder.*"]`` -> one group per
            item, in order, plus a last group with every parameter no pattern matched (the
            head, in fine-tuning); or a function ``model -> [modules or parameter lists]``.

    Returns:
        Non-empty groups, each parameter in exactly one.

    Raises:
        TrainingError: a pattern matches nothing, or a function returns a parameter twice.
    """
    named = list(model.named_parameters())
    if groups is None:
        return [named]
    if callable(groups):
        name_of = {id(p): n for n, p in named}
        out, seen = [], set()
        for i, item in enumerate(groups(model)):
            params = list(item.parameters()) if isinstance(item, nn.Module) else list(item)
            group = []
            for p in params:
                if id(p) in seen:
                    raise TrainingError(
                        f"param_groups function: parameter `{name_of.get(id(p), '?')}` appears "
                        f"in more than one group (again in group {i})."
                    )
                seen.add(id(p))
                group.append((name_of.get(id(p), f"group{i}.param"), p))
            if group:
                out.append(group)
        rest = [(n, p) for n, p in named if id(p) not in seen]
        if rest:
            out.append(rest)
        return out
    items = list(groups)
    patterns = {id(item): [item] if isinstance(item, str) else list(item) for item in items}
    return group_by_patterns(
        named, items, lambda n, item: any(fnmatch.fnmatchcase(n, p) for p in patterns[id(item)])
    )


def spread_lr(lr: float | slice | Sequence[float], n_groups: int) -> list[float]:
    """One learning rate per group.

    ``lr`` a float: the same for all; ``slice(lo, hi)``: log-spaced from ``lo`` (first
    group) to ``hi`` (last group); ``slice(hi)``: ``hi / 10`` for all but the last group;
    a sequence: one value per group.

    Raises:
        TrainingError: a sequence of the wrong length, or a non-positive rate.
    """
    if isinstance(lr, slice):
        hi = lr.stop
        if hi is None:
            raise TrainingError(f"lr=slice(...) needs an upper rate. Received: {lr!r}")
        if lr.start is None:
            rates = [hi / 10] * (n_groups - 1) + [hi]
        elif n_groups == 1:
            rates = [hi]
        else:
            lo = lr.start
            rates = [lo * (hi / lo) ** (i / (n_groups - 1)) for i in range(n_groups)]
    elif isinstance(lr, (int, float)):
        rates = [float(lr)] * n_groups
    else:
        rates = [float(x) for x in lr]
        if len(rates) != n_groups:
            raise TrainingError(
                f"Received {len(rates)} learning rates for {n_groups} parameter groups; "
                "expected one per group (or a float, or a slice(lo, hi))."
            )
    if any(not r > 0 for r in rates):
        raise TrainingError(f"learning rates must be positive. Received: lr={lr!r}")
    return rates


def _no_decay(name: str, p: nn.Parameter) -> bool:
    # Biases and norm gains are 1-D: decaying them hurts and buys no regularisation.
    return p.ndim <= 1


def _check_weight_decay(wd: Any) -> None:
    # torch checks only its constructor's default, not a group's own value; NaN fails too.
    if isinstance(wd, bool) or not isinstance(wd, (int, float)) or not 0 <= wd < math.inf:
        raise TrainingError(f"weight decay must be a finite number >= 0. Received: wd={wd!r}")


def make_optimizer(
    model: nn.Module,
    opt: str | type | Callable[..., torch.optim.Optimizer] | torch.optim.Optimizer = "adamw",
    *,
    lr: float | slice | Sequence[float] = 1e-3,
    wd: float = 0.01,
    param_groups: GroupSpec = None,
    decay_1d: bool = False,
    **options: Any,
) -> torch.optim.Optimizer:
    """Build an optimizer over ``model``'s parameters.

    Args:
        model: the module to optimize (frozen parameters are included, so unfreezing
            later needs no new optimizer; they have no gradient and are skipped).
        opt: a name in ``OPTIMIZERS`` ("adamw", "adam", "sgd", "radam", "rmsprop") or
            ``{"name": ..., **options}`` (a recipe's form), an
            optimizer class, a function ``(param_groups, lr=...) -> Optimizer``, or a ready
            optimizer (returned as is; its groups get a ``base_lr``).
        lr: learning rate(s), see ``spread_lr``.
        wd: weight decay (decoupled for AdamW).
        param_groups: how to split parameters into groups, see ``split_groups``.
        decay_1d: also decay biases and norm weights.
        **options: passed to the optimizer (they override the defaults).

    Returns:
        The optimizer, on a fused kernel where PyTorch has one for these parameters, else
        foreach.

    Raises:
        TrainingError: an unknown optimizer name, or bad ``lr`` / ``wd`` / ``param_groups``.

    Example:
        >>> opt = make_optimizer(model, "adamw", lr=slice(1e-5, 1e-3),
        ...                      param_groups=["encoder.*"])
    """
    opt, options = _unpack(opt, options)
    if isinstance(opt, torch.optim.Optimizer):
        for g in opt.param_groups:
            g.setdefault("base_lr", g["lr"])
            g.setdefault("group", 0)
        return opt
    groups = split_groups(model, param_groups)
    rates = spread_lr(lr, len(groups))
    _check_weight_decay(wd)
    torch_groups = []
    for i, (group, rate) in enumerate(zip(groups, rates)):
        # Without weight decay there is nothing to split: one torch group per group keeps
        # the fused kernel to one launch per step.
        keep_all = decay_1d or wd == 0
        decay = [p for n, p in group if keep_all or not _no_decay(n, p)]
        plain = [p for n, p in group if not (keep_all or not _no_decay(n, p))]
        for params, weight_decay in ((decay, wd), (plain, 0.0)):
            if params:
                torch_groups.append(
                    {
                        "params": params,
                        "lr": rate,
                        "base_lr": rate,
                        "group": i,
                        "weight_decay": weight_decay,
                    }
                )
    if isinstance(opt, str):
        key = opt.lower()
        if key not in OPTIMIZERS:
            raise TrainingError(
                f"Received an unknown optimizer `{opt}`. Known: {', '.join(OPTIMIZERS)}; "
                "or pass an optimizer class or function."
            )
        cls, defaults = OPTIMIZERS[key]
        return _with_fast_kernel(cls, torch_groups, {**defaults, **options, "lr": rates[-1]})
    if isinstance(opt, type) and issubclass(opt, torch.optim.Optimizer):
        return _with_fast_kernel(opt, torch_groups, {**options, "lr": rates[-1]})
    made = opt(torch_groups, lr=rates[-1], **options)  # type: ignore[operator,call-arg]
    if not isinstance(made, torch.optim.Optimizer):
        raise TrainingError(
            f"opt function {opt!r} must return a torch.optim.Optimizer. Received: {type(made).__name__}"
        )
    return made


def _unpack(opt: Any, options: dict[str, Any]) -> tuple[Any, dict[str, Any]]:
    """A recipe's ``{"name": "adamw", **options}`` -> ``("adamw", options)``."""
    if isinstance(opt, Mapping) and isinstance(opt.get("name"), str):
        return opt["name"], {**{k: v for k, v in opt.items() if k != "name"}, **options}
    return opt, options


def _with_fast_kernel(
    cls: type[torch.optim.Optimizer], groups: list[dict[str, Any]], kwargs: dict[str, Any]
) -> torch.optim.Optimizer:
    import inspect

    accepted = inspect.signature(cls.__init__).parameters
    if "fused" in accepted and "fused" not in kwargs and "foreach" not in kwargs:
        try:
            return cls(groups, fused=True, **kwargs)  # type: ignore[call-arg]
        except (RuntimeError, ValueError, TypeError) as exc:
            log.debug("fused %s unavailable (%s); using foreach", cls.__name__, exc)
    if "foreach" in accepted and "foreach" not in kwargs and "fused" not in kwargs:
        return cls(groups, foreach=True, **kwargs)  # type: ignore[call-arg]
    return cls(groups, **kwargs)


def set_lr(opt: torch.optim.Optimizer, lr: float | slice | Sequence[float]) -> None:
    """Set every group's ``base_lr`` (and current ``lr``) from ``lr`` (see ``spread_lr``)."""
    n = max(g.get("group", 0) for g in opt.param_groups) + 1
    rates = spread_lr(lr, n)
    for g in opt.param_groups:
        g["base_lr"] = g["lr"] = rates[g.get("group", 0)]
