"""Model surgery: swap parts inside a built or trained model, or add new parts beside them.

A slot is a place in a model that holds a part of one kind, named as ``named_modules()``
spells it (``decoder.layers.0.self_attention``; see ``nnblocks.slots``). ``swap`` replaces
the parts at the slots a glob pattern matches with new parts of the same kind, built with
the old part's own constructor arguments (``dim``, ``heads``) as defaults and the weights
copied where names and shapes match::

    model = nnblocks.load("runs/lm")
    nnblocks.surgery.swap(model, "decoder.layers.*.self_attention", {"name": "gqa", "kv_heads": 1})
    nnblocks.save(model, "runs/lm_gqa")      # nnblocks.load rebuilds the swapped model

``beside`` keeps the trained part and runs a new one next to it: each matching attention
becomes a ``parallel`` part whose first branch is the trained part itself (same weights) and
whose merge starts as that branch alone, so the model's outputs do not change until
training moves the new branch in::

    nnblocks.surgery.beside(model, "decoder.layers.*.self_attention", {"name": "local", "window": 8})

Both are recorded in the model's spec under the key ``"surgery"``, a list applied in order
after the model is built::

    {"name": "transformer_lm", "dim": 256, ...,
     "surgery": [{"pattern": "decoder.layers.*.self_attention", "spec": {"name": "gqa", ...}},
                 {"op": "beside", "pattern": "...", "spec": "local", "merge": "gate"}]}

Each model's options map to its slots in its own way (``layer_overrides`` in a
Transformer, nothing in an MLP), so a change cannot in general be written back as a change
of those options; the record can be replayed on any model. ``nnblocks.build`` replays it
(through the build hook this module registers, ``apply_surgery``), so ``nnblocks.load``
rebuilds the changed architecture before loading its weights. Surgery also remembers which
modules it put in (``nnblocks.slots.inserted``): ``Learner.fine_tune`` trains those first.

``freeze`` and ``unfreeze`` are the Learner's (``nnblocks.freezing``), re-exported.
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
from nnblocks.freezing import freeze, group_by_patterns, unfreeze
from nnblocks.registry import add_build_hook, build, kind_of, spec_of
from nnblocks.slots import Slot, close_slots, find, mark_inserted, outermost, part_name, slots
from nnblocks.spec import join_path

__all__ = [
    "SURGERY_KEY",
    "MERGES",
    "Slot",
    "Swap",
    "Beside",
    "slots",
    "swap",
    "beside",
    "grow",
    "apply_surgery",
    "freeze",
    "unfreeze",
    "param_groups",
]

log = logging.getLogger(__name__)

SURGERY_KEY = "surgery"
_COPY_CHOICES = ("auto", True, False)
# The merges of a `parallel` part that can start as its first branch alone.
MERGES = ("gate", "concat")
# kind -> the part that runs parts of that kind side by side
_COMBINATORS = {"attention": "parallel"}
_RECORD_KEYS = {
    "swap": {"pattern", "spec", "kind"},
    "beside": {"op", "pattern", "spec", "merge"},
    "grow": {"op", "pattern", "out_features"},
}


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


@dataclasses.dataclass(frozen=True)
class Beside:
    """One trained part with a new part put beside it.

    Attributes:
        paths: the slots (now holding a ``parallel`` part) it was done at.
        old, new: the part names of the trained part (``branches.0``) and the new one
            (``branches.1``).
        inserted: module paths of what was added (the new branch and the merge), the
            parameters ``Learner.fine_tune`` trains first.
    """

    paths: tuple[str, ...]
    old: str
    new: str
    inserted: tuple[str, ...]


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
        >>> tuple(s.new for s in done)
        ('gqa', 'gqa')
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
        done.append(Swap(tuple(paths), part_name(old), part_name(new), copied, fresh))
        log.info(
            "swapped %s: %s -> %s (%d tensors copied, %d new)",
            ", ".join(paths), done[-1].old, done[-1].new, len(copied), len(fresh),
        )  # fmt: skip
    _retie(model)
    mark_inserted(model, [path for swapped in done for path in swapped.paths])
    if record:
        _record(model, {"pattern": slot_pattern, "spec": spec, "kind": kind})
    return done


def _match(model: nn.Module, pattern: str) -> list[tuple[list[str], nn.Module]]:
    """Outermost matching modules, each with every path it sits at."""
    if not isinstance(pattern, str) or not pattern:
        raise SpecError(
            f"a slot pattern is a module path or glob, e.g. `decoder.layers.*.self_attention`. "
            f"Received: {pattern!r}",
            path="surgery",
        )
    hits = find(model, pattern)
    if not hits:
        raise SpecError(
            f"slot pattern `{pattern}` matches no module of {type(model).__name__}. Expected a "
            "module path as named_modules() spells it, or a glob. Close slots: "
            f"{', '.join(close_slots(model, pattern))}",
            path=pattern,
        )
    return outermost(model, hits)


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
            f"the slot holds a `{slot_kind}` part (`{part_name(old)}`), but kind={kind!r} "
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
            f"(`{part_name(new)}`). Expected a `{slot_kind}` part.",
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


def _record(model: nn.Module, entry: dict[str, Any]) -> None:
    base = getattr(model, "_nnblocks_spec", None)
    if not isinstance(base, dict):
        return  # not built from a spec: nothing to rebuild from, nothing to record
    spec = entry.get("spec")
    if isinstance(spec, nn.Module) and kind_of(spec) is not None:
        spec = spec_of(spec)  # plain data, so the changed model can still be saved
    entry = {k: _plain_copy(spec if k == "spec" else v) for k, v in entry.items() if v is not None}
    spec_now = {**base, SURGERY_KEY: [*base.get(SURGERY_KEY, []), entry]}
    setattr(model, "_nnblocks_spec", spec_now)  # noqa: B010


def _plain_copy(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _plain_copy(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain_copy(v) for v in value]
    return value


def beside(
    model: nn.Module,
    pattern: str,
    spec: Any,
    merge: str = "gate",
    *,
    record: bool = True,
) -> list[Beside]:
    """Put a new part beside the trained part at every slot matching ``pattern``.

    Each matching part becomes the first branch of a ``parallel`` part (the module itself,
    its weights untouched), the part built from ``spec`` the second, and the merge starts
    as the first branch alone (``parallel(start="first")``): right after the call the
    model computes exactly what it computed before, and training then moves the merge and
    the new branch. The new part is built with the old part's constructor arguments as
    defaults (``dim``, ``heads``), as in ``swap``. Nothing changes unless every match can
    be done.

    Args:
        model: the model, changed in place.
        pattern: a module path or glob over module paths (``decoder.layers.*.self_attention``).
            Every outermost match must be a slot of a kind with a side-by-side part
            (attention: ``parallel``).
        spec: the new part: a name, a dict spec or a class (not a ready module, so each
            slot gets its own part).
        merge: ``"gate"``: ``out = old + tanh(g(x)) * new`` with a zero-initialised gate
            ``g`` per position; ``"concat"``: a projection of both outputs that starts as
            ``[I, 0]``.
        record: append ``{"op": "beside", "pattern", "spec", "merge"}`` to the model's
            spec, so ``nnblocks.save``/``load`` rebuild the model with the new parts.

    Returns:
        One ``Beside`` per changed part.

    Raises:
        SpecError: the pattern matches nothing, or a module that is not a slot of such a
            kind (naming the pattern and the close slots of the right kind); an unknown
            ``merge``; a ready module; a spec that builds no part of the slot's kind.

    Example:
        >>> lm = nnblocks.build({"name": "transformer_lm", "vocab_size": 100, "dim": 32,
        ...                      "heads": 4, "layers": 2})
        >>> done = beside(lm, "decoder.layers.*.self_attention", {"name": "local", "window": 4})
        >>> [d.new for d in done]
        ['local', 'local']
    """
    if merge not in MERGES:
        raise SpecError(
            f"Received an invalid value for `merge`: expected one of {', '.join(MERGES)} "
            f"(a merge that can start as the trained part alone). Received: merge={merge!r}",
            path=pattern if isinstance(pattern, str) else "beside",
        )
    if isinstance(spec, nn.Module):
        raise SpecError(
            "beside builds a new part for each slot: pass a name, a dict spec or a class. "
            f"Received: a ready {type(spec).__name__}",
            path=pattern if isinstance(pattern, str) else "beside",
        )
    targets = _match(model, pattern)
    _check_beside_kinds(model, pattern, targets)
    planned = [_plan_beside(old, paths, spec, merge) for paths, old in targets]
    done = []
    for (paths, old), combined in zip(targets, planned):
        for path in paths:
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent), child, combined)
        merged = "gate" if merge == "gate" else "proj"
        added = tuple(f"{p}.{name}" for p in paths for name in ("branches.1", merged))
        new = combined.get_submodule("branches.1")
        done.append(Beside(tuple(paths), part_name(old), part_name(new), added))
        log.info("put %s beside %s at %s", done[-1].new, done[-1].old, ", ".join(paths))
    mark_inserted(model, [p for d in done for p in d.inserted])
    if record:
        _record(model, {"op": "beside", "pattern": pattern, "spec": spec, "merge": merge})
    return done


def _check_beside_kinds(
    model: nn.Module, pattern: str, targets: list[tuple[list[str], nn.Module]]
) -> None:
    wrong = [(paths[0], kind_of(m)) for paths, m in targets if kind_of(m) not in _COMBINATORS]
    if not wrong:
        return
    kinds = ", ".join(_COMBINATORS)
    shown = ", ".join(
        f"`{p}` ({'a ' + k + ' part' if k else 'not a slot: ' + type(model.get_submodule(p)).__name__})"
        for p, k in wrong[:4]
    )
    close = [c for k in _COMBINATORS for c in close_slots(model, pattern, kind=k)]
    raise SpecError(
        f"beside puts a new part beside a trained {kinds} part, but slot pattern `{pattern}` "
        f"matches {shown}. Nothing was changed. Close {kinds} slots: "
        f"{', '.join(close) or '(none)'}",
        path=pattern,
    )


def _plan_beside(old: nn.Module, paths: list[str], spec: Any, merge: str) -> nn.Module:
    """The ``parallel`` part holding ``old`` and a new part (nothing is placed yet)."""
    where = paths[0]
    slot_kind = kind_of(old)
    assert slot_kind is not None  # checked by _check_beside_kinds
    defaults = {k: v for k, v in spec_of(old).items() if k not in ("name", SURGERY_KEY)}
    new = build(spec, slot_kind, at=f"{where}.branches.1", **defaults)
    if kind_of(new) not in (None, slot_kind):
        raise SpecError(
            f"the slot holds a `{slot_kind}` part, but the new module is a `{kind_of(new)}` "
            f"part (`{part_name(new)}`). Expected a `{slot_kind}` part.",
            path=where,
        )
    _match_placement(old, new)
    outer = {k: defaults[k] for k in ("dim", "heads") if k in defaults}
    combined = build(
        {"name": _COMBINATORS[slot_kind], "branches": [old, new], "merge": merge, "start": "first"},
        slot_kind,
        at=where,
        **outer,
    )
    # The combinator remembers its branches as modules; as specs it can be rebuilt and saved.
    remembered = getattr(combined, "_nnblocks_spec", None)
    if isinstance(remembered, dict):
        remembered["branches"] = [_spec_or_module(old), _spec_or_module(new)]
    _match_placement(old, combined)
    return combined


def _spec_or_module(module: nn.Module) -> Any:
    return spec_of(module) if kind_of(module) is not None else module


def _rows(module: nn.Module) -> int | None:
    """Outputs of a linear head (``nn.Linear``, or a registered ``head`` part holding a
    ``weight [out, in]``); None for anything else."""
    weight = getattr(module, "weight", None)
    linear = isinstance(module, nn.Linear) or (kind_of(module) == "head" and bool(spec_of(module)))
    if not linear or not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        return None
    return int(weight.shape[0])


def _wider(old: nn.Module, out_features: int) -> nn.Module:
    """A head like ``old`` with ``out_features`` outputs (its rows still to be copied)."""
    if isinstance(old, nn.Linear):
        return nn.Linear(old.in_features, out_features, bias=old.bias is not None)
    return build({**(spec_of(old) or {}), "out_features": out_features}, "head")


def grow(model: nn.Module, pattern: str, out_features: int, *, record: bool = True) -> list[str]:
    """Give the linear head(s) at ``pattern`` more outputs, keeping the old rows.

    For class-incremental learning (Avalanche's ``IncrementalClassifier``): the head's
    first ``old`` rows (weights and bias) are the trained ones, the new rows start as
    ``nn.Linear`` initialises them, so the old classes score exactly as before.

    Args:
        model: the model, changed in place.
        pattern: a module path or glob matching ``nn.Linear`` modules (``"head"``).
        out_features: the new number of outputs (at least the present number).
        record: append ``{"op": "grow", "pattern", "out_features"}`` to the model's spec,
            so ``nnblocks.save``/``load`` rebuild the grown head.

    Returns:
        The module paths grown.

    Raises:
        SpecError: the pattern matches nothing or a module that is not ``nn.Linear``, or
            ``out_features`` is smaller than a head's present outputs (nothing changed).
    """
    targets = _match(model, pattern)
    for paths, old in targets:
        rows = _rows(old)
        if rows is None:
            raise SpecError(
                f"grow widens a linear head, but `{paths[0]}` is a {type(old).__name__}. "
                f"Close slots: {', '.join(close_slots(model, pattern))}",
                path=pattern,
            )
        if (
            isinstance(out_features, bool)
            or not isinstance(out_features, int)
            or out_features < rows
        ):
            raise SpecError(
                f"Received an invalid value for `out_features`: expected an integer >= "
                f"{rows} (the head's present outputs). Received: {out_features!r}",
                path=paths[0],
            )
    done = []
    for paths, old in targets:
        new, rows = _wider(old, out_features), _rows(old) or 0
        _match_placement(old, new)
        with torch.no_grad():  # the old classes score exactly as before
            for name in ("weight", "bias"):
                old_t, new_t = getattr(old, name, None), getattr(new, name, None)
                if isinstance(old_t, torch.Tensor) and isinstance(new_t, torch.Tensor):
                    new_t[:rows].copy_(old_t)
        for path in paths:
            parent, _, child = path.rpartition(".")
            setattr(model.get_submodule(parent), child, new)
        done.extend(paths)
    _retie(model)
    mark_inserted(model, done)
    if record:
        _record(
            model, {"op": "grow", "pattern": pattern, "spec": None, "out_features": out_features}
        )
    return done


def apply_surgery(model: nn.Module, records: Any, *, path: str = "") -> nn.Module:
    """Replay recorded surgery on a freshly built model (``nnblocks.build`` calls this).

    Args:
        model: the model built from its spec without the ``"surgery"`` key.
        records: the list under ``"surgery"``: swaps ``{"pattern": ..., "spec": ...,
            "kind": (optional)}`` and ``{"op": "beside", "pattern": ..., "spec": ...,
            "merge": ...}``, applied in order with fresh weights.
        path: the model's spec path, for messages.

    Returns:
        The model, changed in place; its spec holds the records again.

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
        op = _check_record(entry, at=f"{where}[{i}]")
        if op == "grow":
            grow(model, entry["pattern"], entry.get("out_features"))  # type: ignore[arg-type]
        elif op == "beside":
            beside(model, entry["pattern"], entry["spec"], merge=entry.get("merge", "gate"))
        else:
            swap(model, entry["pattern"], entry["spec"], kind=entry.get("kind"), copy_weights=False)
    return model


def _check_record(entry: Any, *, at: str) -> str:
    """The record's operation ("swap" or "beside"), after checking its shape."""
    if (
        not isinstance(entry, Mapping)
        or not isinstance(entry.get("pattern"), str)
        or ("spec" not in entry and entry.get("op") != "grow")
    ):
        raise SpecError(
            f'a surgery record is {{"pattern": "<slot glob>", "spec": <part spec>}}. '
            f"Received: {entry!r:.120}",
            path=at,
        )
    op = entry.get("op", "swap")
    if op not in _RECORD_KEYS:
        raise SpecError(
            f"Received an invalid value for `op` of a surgery record: expected one of "
            f"{', '.join(_RECORD_KEYS)}. Received: op={op!r}",
            path=at,
        )
    unknown = sorted(set(entry) - _RECORD_KEYS[op] - {"op"})
    if unknown:
        expected = ", ".join(sorted(_RECORD_KEYS[op] - {"op"}))
        raise SpecError(
            f"unknown key(s) {unknown} in a surgery record; expected {expected}.", path=at
        )
    return str(op)


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
    # A pattern names modules (or parameters): it takes every parameter inside them.
    groups = group_by_patterns(
        list(model.named_parameters()),
        patterns,
        lambda n, pattern: (
            fnmatch.fnmatchcase(n, pattern) or fnmatch.fnmatchcase(n, f"{pattern}.*")
        ),
    )
    mults = [float(lr_mults[p]) for p in patterns]
    if len(groups) > len(patterns):  # the last group holds what no pattern took
        mults.append(1.0)
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


add_build_hook(SURGERY_KEY, apply_surgery)
