"""Model surgery: swap parts inside a built or trained model; freeze; parameter groups.

A slot is a place in a model that holds a part of one kind, named as ``named_modules()``
spells it (``decoder.layers.0.self_attention``). ``swap`` replaces the parts at the slots
a glob pattern matches with new parts of the same kind, built with the old part's own
constructor arguments (``dim``, ``heads``) as defaults and the weights copied where names
and shapes match::

    model = nnblocks.load("runs/lm")
    nnblocks.surgery.swap(model, "decoder.layers.*.self_attention", {"name": "gqa", "kv_heads": 1})
    nnblocks.save(model, "runs/lm_gqa")      # nnblocks.load rebuilds the swapped model

Swaps are recorded in the model's spec under the key ``"surgery"``, a list applied in order
after the model is built::

    {"name": "transformer_lm", "dim": 256, ...,
     "surgery": [{"pattern": "decoder.layers.*.self_attention", "spec": {"name": "gqa", ...}}]}

Each model's options map to its slots in its own way (``layer_overrides`` in a
Transformer, nothing in an MLP), so a swap cannot in general be written back as a change
of those options; the record can be replayed on any model. ``nnblocks.build`` applies it
(``apply_surgery``) for every spec that carries the key, so ``nnblocks.load`` rebuilds the
swapped architecture before loading its weights.

``freeze`` and ``unfreeze`` are the Learner's (``nnblocks.train.freeze``), re-exported.
"""

from __future__ import annotations

import dataclasses
import fnmatch
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.registry import build, kind_of, spec_of
from nnblocks.spec import close_matches, join_path
from nnblocks.train.freeze import freeze, unfreeze
from nnblocks.train.optim import split_groups

__all__ = [
    "SURGERY_KEY",
    "Slot",
    "Swap",
    "slots",
    "swap",
    "apply_surgery",
    "freeze",
    "unfreeze",
    "param_groups",
]

log = logging.getLogger(__name__)

SURGERY_KEY = "surgery"
_COPY_CHOICES = ("auto", True, False)


@dataclasses.dataclass(frozen=True)
class Slot:
    """A place in a model holding a part: its module path, kind and part name."""

    path: str
    kind: str
    name: str


@dataclasses.dataclass(frozen=True)
class Swap:
    """One replaced part.

    Attributes:
        paths: the slots it was replaced at (several when the part was shared).
        old, new: the part names (or class names of parts built without a spec).
        copied: state-dict entries copied from the old part.
        fresh: entries of the new part left as built (no match by name and shape).
    """

    paths: tuple[str, ...]
    old: str
    new: str
    copied: tuple[str, ...]
    fresh: tuple[str, ...]


def _part_name(module: nn.Module) -> str:
    spec = getattr(module, "_nnblocks_spec", None)
    return spec["name"] if isinstance(spec, Mapping) and "name" in spec else type(module).__name__


def slots(model: nn.Module) -> list[Slot]:
    """Every slot of ``model``: the modules built from a spec, in ``named_modules`` order.

    A part shared by several slots (tied embeddings) is listed at each of them.

    Example:
        >>> [s.path for s in slots(lm) if s.kind == "attention"]   # doctest: +SKIP
        ['decoder.layers.0.self_attention', 'decoder.layers.1.self_attention']
    """
    out = []
    for path, module in model.named_modules(remove_duplicate=False):
        kind = kind_of(module)
        if path and kind is not None:
            out.append(Slot(path, kind, _part_name(module)))
    return out


def swap(
    model: nn.Module,
    slot_pattern: str,
    spec: Any,
    *,
    copy_weights: bool | str = "auto",
    kind: str | None = None,
    record: bool = True,
) -> list[Swap]:
    """Replace the part at every slot matching ``slot_pattern`` with a part built from ``spec``.

    The new part is built for the slot's kind (``nnblocks.kind_of(old)``) with the old
    part's constructor arguments (``nnblocks.spec_of(old)``, e.g. ``dim`` and ``heads``)
    offered as defaults, which the new spec's options override; arguments the new part
    does not take are not passed. It takes the old part's device, floating dtype and
    training mode. Where a pattern matches a slot and slots inside it, the outermost is
    swapped. A part shared by several slots is replaced at all of them by one new part.
    Nothing changes unless every match can be built.

    Args:
        model: the model, changed in place.
        slot_pattern: a module path or a glob over module paths, as ``named_modules()``
            spells them (``decoder.layers.*.self_attention``; ``*`` also crosses dots).
        spec: a part name, a dict spec, a class, or a ready module (one slot only).
        copy_weights: ``"auto"``: copy every state-dict entry whose name and shape match
            (not for a ready module, which keeps its own); ``True``: copy, and fail unless
            every entry of the new part matches; ``False``: keep the new part's weights.
        kind: the kind of slots that hold a module not built from a spec (a plain
            ``nn.Linear``); must equal ``kind_of`` where that is known.
        record: append ``{"pattern", "spec"}`` to the model's spec (``"surgery"``), so
            ``nnblocks.save``/``load`` rebuild the swapped model.

    Returns:
        One ``Swap`` per replaced part.

    Raises:
        SpecError: the pattern matches nothing (listing close slot paths); the spec is of
            another kind than the slot (naming the slot and its kind); the slot's kind is
            unknown and ``kind`` not given; ``copy_weights=True`` and an entry does not
            match; a ready module for several slots.

    Example:
        >>> lm = nnblocks.build({"name": "transformer_lm", "vocab_size": 100, "dim": 32,
        ...                      "heads": 4, "layers": 2})
        >>> done = swap(lm, "decoder.layers.*.self_attention", {"name": "gqa", "kv_heads": 2})
        >>> [s.new for s in done]
        ['gqa', 'gqa']
    """
    if copy_weights not in _COPY_CHOICES or not isinstance(copy_weights, (bool, str)):
        raise SpecError(
            'Received an invalid value for `copy_weights`: expected "auto", True or False. '
            f"Received: copy_weights={copy_weights!r}",
            path=slot_pattern,
        )
    targets = _match(model, slot_pattern)
    if isinstance(spec, nn.Module) and len(targets) > 1:
        raise SpecError(
            f"a ready module can fill one slot, but `{slot_pattern}` matches "
            f"{len(targets)}: {', '.join(paths[0] for paths, _ in targets)}. Pass a name, "
            "a dict spec or a class, so each slot gets its own part.",
            path=slot_pattern,
        )
    planned = [
        _plan(old, paths, spec, kind=kind, copy_weights=copy_weights) for paths, old in targets
    ]
    done = []
    for (paths, old), (new, copied, fresh) in zip(targets, planned):
        for path in paths:
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
        done.append(Swap(tuple(paths), _part_name(old), _part_name(new), copied, fresh))
        log.info(
            "swapped %s: %s -> %s (%d tensors copied, %d new)",
            ", ".join(paths), done[-1].old, done[-1].new, len(copied), len(fresh),
        )  # fmt: skip
    _retie(model)
    if record:
        _record(model, slot_pattern, spec, kind)
    return done


def _match(model: nn.Module, pattern: str) -> list[tuple[list[str], nn.Module]]:
    """Outermost matching modules, each with every path it sits at."""
    if not isinstance(pattern, str) or not pattern:
        raise SpecError(
            f"a slot pattern is a module path or glob, e.g. `decoder.layers.*.self_attention`. "
            f"Received: {pattern!r}",
            path="surgery",
        )
    named = [(p, m) for p, m in model.named_modules(remove_duplicate=False) if p]
    hits = [p for p, _ in named if fnmatch.fnmatchcase(p, pattern)]
    if not hits:
        raise SpecError(_no_match(model, pattern, [p for p, _ in named]), path=pattern)
    outer = [p for p in hits if not any(p.startswith(h + ".") for h in hits)]
    by_module: dict[int, tuple[list[str], nn.Module]] = {}
    for path in outer:
        module = model.get_submodule(path)
        by_module.setdefault(id(module), ([], module))
    for path, module in named:  # a shared part is replaced wherever it sits
        if id(module) in by_module and path not in by_module[id(module)][0]:
            by_module[id(module)][0].append(path)
    return list(by_module.values())


def _no_match(model: nn.Module, pattern: str, paths: list[str]) -> str:
    parts = [s.path for s in slots(model)] or paths
    close = close_matches(pattern, parts, n=5)
    head = pattern.split("*")[0].split("?")[0].split("[")[0]
    while not close and head:  # a glob rarely looks like a path: try its literal head
        close = [p for p in parts if p.startswith(head)][:5]
        head = head[: head.rfind(".") + 1] if not head.endswith(".") else head[:-1]
        head = head if "." in head else ""
    close = close or parts[:8]
    return (
        f"slot pattern `{pattern}` matches no module of {type(model).__name__}. Expected a "
        f"module path as named_modules() spells it, or a glob. Close slots: {', '.join(close)}"
    )


def _plan(
    old: nn.Module,
    paths: list[str],
    spec: Any,
    *,
    kind: str | None,
    copy_weights: bool | str,
) -> tuple[nn.Module, tuple[str, ...], tuple[str, ...]]:
    """Build the new part for ``old`` and copy its weights (nothing is placed yet)."""
    where = paths[0]
    slot_kind = kind_of(old)
    if kind is not None and slot_kind is not None and kind != slot_kind:
        raise SpecError(
            f"the slot holds a `{slot_kind}` part (`{_part_name(old)}`), but kind={kind!r} "
            "was given. Expected the slot's own kind.",
            path=where,
        )
    slot_kind = slot_kind or kind
    if slot_kind is None:
        raise SpecError(
            f"the slot holds a {type(old).__name__} that was not built from a spec, so its "
            'kind is unknown. Pass kind= (e.g. kind="attention") to swap it.',
            path=where,
        )
    defaults: dict[str, Any] = {}
    if kind_of(old) is not None:
        defaults = {k: v for k, v in spec_of(old).items() if k not in ("name", SURGERY_KEY)}
    new = build(spec, slot_kind, at=where, **defaults)
    new_kind = kind_of(new)
    if new_kind is not None and new_kind != slot_kind:
        raise SpecError(
            f"the slot holds a `{slot_kind}` part, but the new module is a `{new_kind}` part "
            f"(`{_part_name(new)}`). Expected a `{slot_kind}` part.",
            path=where,
        )
    if not isinstance(new, nn.Module):
        raise SpecError(
            f"the slot holds a `{slot_kind}` module; the spec built a {type(new).__name__}.",
            path=where,
        )
    _match_placement(old, new)
    if copy_weights == "auto" and isinstance(spec, nn.Module):
        copy_weights = False  # a ready module keeps the weights it came with
    copied, fresh = _copy_weights(
        old, new, strict=copy_weights is True, enabled=bool(copy_weights), where=where
    )
    return new, copied, fresh


def _match_placement(old: nn.Module, new: nn.Module) -> None:
    tensors = [*old.parameters(), *old.buffers()]
    if tensors:
        new.to(device=tensors[0].device)
        floats = [t.dtype for t in tensors if t.is_floating_point()]
        if floats:
            new.to(dtype=floats[0])
    new.train(old.training)


def _copy_weights(
    old: nn.Module, new: nn.Module, *, strict: bool, enabled: bool, where: str
) -> tuple[tuple[str, ...], tuple[str, ...]]:
    if not enabled:
        return (), tuple(new.state_dict())
    source, target = old.state_dict(), new.state_dict()
    copied = [k for k, t in target.items() if k in source and source[k].shape == t.shape]
    fresh = [k for k in target if k not in copied]
    if strict and fresh:
        shown = ", ".join(
            f"{k} {tuple(target[k].shape)} (old: {tuple(source[k].shape) if k in source else 'none'})"
            for k in fresh[:6]
        )
        raise SpecError(
            "copy_weights=True needs every weight of the new part in the old one with the "
            f'same name and shape. Not matched: {shown}. Pass copy_weights="auto" to copy '
            "what matches and keep the rest as built.",
            path=where,
        )
    with torch.no_grad():
        for key in copied:
            target[key].copy_(source[key])
    return tuple(copied), tuple(fresh)


def _retie(model: nn.Module) -> None:
    """Keep ``model.tied_parameters`` true: drop names whose Parameter is no longer shared."""
    groups = getattr(model, "tied_parameters", None)
    if not isinstance(groups, (list, tuple)):
        return
    params = dict(model.named_parameters(remove_duplicate=False))
    kept: list[tuple[str, ...]] = []
    for group in groups:
        names = [n for n in group if n in params]
        by_param: dict[int, list[str]] = {}
        for name in names:
            by_param.setdefault(id(params[name]), []).append(name)
        kept.extend(tuple(n) for n in by_param.values() if len(n) > 1)
    setattr(model, "tied_parameters", kept)  # noqa: B010  (nn.Module types attributes as modules)


def _record(model: nn.Module, pattern: str, spec: Any, kind: str | None) -> None:
    base = getattr(model, "_nnblocks_spec", None)
    if not isinstance(base, dict):
        return  # not built from a spec: nothing to rebuild from, nothing to record
    if isinstance(spec, nn.Module) and kind_of(spec) is not None:
        spec = spec_of(spec)  # plain data, so the swapped model can still be saved
    entry: dict[str, Any] = {"pattern": pattern, "spec": _plain_copy(spec)}
    if kind is not None:
        entry["kind"] = kind
    spec_now = {**base, SURGERY_KEY: [*base.get(SURGERY_KEY, []), entry]}
    setattr(model, "_nnblocks_spec", spec_now)  # noqa: B010


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


def apply_surgery(model: nn.Module, records: Any, *, path: str = "") -> nn.Module:
    """Replay recorded swaps on a freshly built model (``nnblocks.build`` calls this).

    Args:
        model: the model built from its spec without the ``"surgery"`` key.
        records: the list under ``"surgery"``: ``[{"pattern": ..., "spec": ...,
            "kind": (optional)}, ...]``, applied in order with fresh weights.
        path: the model's spec path, for messages.

    Returns:
        The model, swapped in place; its spec holds the records again.

    Raises:
        SpecError: a malformed record (naming ``surgery[i]``), or a swap that fails.
    """
    where = join_path(path, SURGERY_KEY)
    if not isinstance(model, nn.Module):
        raise SpecError(
            f"`{SURGERY_KEY}` swaps parts inside a module; this spec built a "
            f"{type(model).__name__}.",
            path=where,
        )
    if not isinstance(records, Sequence) or isinstance(records, (str, bytes)):
        raise SpecError(
            f'`{SURGERY_KEY}` is a list of {{"pattern": ..., "spec": ...}} records. '
            f"Received: {records!r:.80}",
            path=where,
        )
    for i, entry in enumerate(records):
        at = f"{where}[{i}]"
        if (
            not isinstance(entry, Mapping)
            or not isinstance(entry.get("pattern"), str)
            or "spec" not in entry
        ):
            raise SpecError(
                f'a surgery record is {{"pattern": "<slot glob>", "spec": <part spec>}}. '
                f"Received: {entry!r:.120}",
                path=at,
            )
        unknown = sorted(set(entry) - {"pattern", "spec", "kind"})
        if unknown:
            raise SpecError(
                f"unknown key(s) {unknown} in a surgery record; expected pattern, spec, kind.",
                path=at,
            )
        swap(model, entry["pattern"], entry["spec"], kind=entry.get("kind"), copy_weights=False)
    return model


def param_groups(
    model: nn.Module, lr_mults: Mapping[str, float], *, lr: float | None = None
) -> list[dict[str, Any]]:
    """Optimizer parameter groups with a learning-rate multiplier per slot pattern.

    Discriminative learning rates (Howard & Ruder 2018, ULMFiT): lower rates for the
    pretrained body than for a new head. Patterns are slot paths or globs; a pattern
    matches the parameters of the modules it names (``"encoder"`` covers
    ``encoder.layers.0.…``). The first pattern that matches a parameter takes it; the
    parameters no pattern matches form a last group with multiplier 1.

    Args:
        model: the model.
        lr_mults: ``{pattern: multiplier}``, in order of priority.
        lr: the base rate; when given each group also gets ``"lr": lr * multiplier``.

    Returns:
        ``[{"params": [...], "names": [...], "lr_mult": m, ("lr": lr * m)}, ...]``, ready
        for ``torch.optim.AdamW(groups, lr=lr)`` (the optimizer ignores ``names`` and
        ``lr_mult``; schedulers can read them).

    Raises:
        TrainingError: a pattern matches no parameter.
        SpecError: a multiplier that is not a positive number.

    Example:
        >>> groups = param_groups(model, {"encoder": 0.1}, lr=1e-3)     # doctest: +SKIP
        >>> opt = torch.optim.AdamW(groups, lr=1e-3)                     # doctest: +SKIP
    """
    patterns = list(lr_mults)
    for pattern, mult in lr_mults.items():
        if isinstance(mult, bool) or not isinstance(mult, (int, float)) or not mult > 0:
            raise SpecError(
                f"Received an invalid learning-rate multiplier for `{pattern}`: expected a "
                f"positive number. Received: {mult!r}",
                path="param_groups",
            )
    groups = split_groups(model, [[p, f"{p}.*"] for p in patterns])
    mults = [float(lr_mults[p]) for p in patterns] + [1.0]
    out = []
    for group, mult in zip(groups, mults):
        entry: dict[str, Any] = {
            "params": [p for _, p in group],
            "names": [n for n, _ in group],
            "lr_mult": mult,
        }
        if lr is not None:
            entry["lr"] = lr * mult
        out.append(entry)
    return out
