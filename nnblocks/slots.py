"""Slots: where the parts sit in a model, found by module path or glob.

A slot is a place in a model that holds a part of one kind, named as ``named_modules()``
spells it (``decoder.layers.0.self_attention``). Surgery (``nnblocks.surgery``) and
freezing (``nnblocks.train.freeze``) both find their modules here, so a pattern means the
same thing to both: a module path or a shell glob over module paths, where ``*`` also
crosses dots (``decoder.layers.*.self_attention``, ``enc*.0``).

This module sits just above the registry (it reads ``kind_of``) and below everything that
changes models, so nothing here imports surgery or training.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Mapping, Sequence

from torch import nn

from nnblocks.registry import kind_of
from nnblocks.spec import close_matches

__all__ = [
    "Slot",
    "slots",
    "part_name",
    "find",
    "outermost",
    "close_slots",
    "mark_inserted",
    "inserted",
]

# Module attribute (on the model surgery changed) listing the module paths surgery put in:
# fine-tuning trains those first.
_INSERTED = "_nnblocks_inserted"


@dataclasses.dataclass(frozen=True)
class Slot:
    """A place in a model holding a part: its module path, kind and part name."""

    path: str
    kind: str
    name: str


def part_name(module: nn.Module) -> str:
    """The registered part name of ``module``, or its class name when built without a spec."""
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
            out.append(Slot(path, kind, part_name(module)))
    return out


def find(model: nn.Module, pattern: str) -> list[tuple[str, nn.Module]]:
    """Every ``(path, module)`` whose path matches ``pattern`` (the model itself excluded).

    A shared module is listed at each path it sits at. An empty list when nothing matches:
    the caller raises its own error (``close_slots`` helps word it).
    """
    return [
        (path, module)
        for path, module in model.named_modules(remove_duplicate=False)
        if path and fnmatch.fnmatchcase(path, pattern)
    ]


def outermost(
    model: nn.Module, hits: Sequence[tuple[str, nn.Module]]
) -> list[tuple[list[str], nn.Module]]:
    """The outermost modules among ``hits``, each with every path it sits at in ``model``.

    Where a pattern matches a module and modules inside it, only the outer one is kept;
    a part shared by several paths is returned once with all of them.
    """
    paths = [p for p, _ in hits]
    outer = [p for p in paths if not any(p.startswith(h + ".") for h in paths)]
    by_module: dict[int, tuple[list[str], nn.Module]] = {}
    for path in outer:
        module = model.get_submodule(path)
        by_module.setdefault(id(module), ([], module))
    for path, module in model.named_modules(remove_duplicate=False):
        if path and id(module) in by_module and path not in by_module[id(module)][0]:
            by_module[id(module)][0].append(path)
    return list(by_module.values())


def close_slots(
    model: nn.Module, pattern: str, *, kind: str | None = None, n: int = 5
) -> list[str]:
    """Slot paths that look like ``pattern`` (of ``kind`` when given), for error messages.

    A glob rarely looks like a path, so when nothing is close its literal head
    (``decoder.layer`` of ``decoder.layer.*.x``) is tried, then shorter heads.
    """
    found = [s.path for s in slots(model) if kind is None or s.kind == kind]
    if not found and kind is None:
        found = [p for p, _ in model.named_modules() if p]
    close = close_matches(pattern, found, n=n)
    head = pattern.split("*")[0].split("?")[0].split("[")[0]
    while not close and head:
        close = [p for p in found if p.startswith(head)][:n]
        head = head[: head.rfind(".") + 1] if not head.endswith(".") else head[:-1]
        head = head if "." in head else ""
    return close or found[:8]


def mark_inserted(model: nn.Module, paths: Sequence[str]) -> None:
    """Remember that surgery put new modules at ``paths`` (read by ``inserted``)."""
    known = [p for p in getattr(model, _INSERTED, []) if p not in paths]
    setattr(model, _INSERTED, [*known, *paths])  # noqa: B010  (nn.Module types attributes as modules)


def inserted(model: nn.Module) -> list[str]:
    """Module paths surgery put into ``model`` that still exist, in the order they came."""
    names = {p for p, _ in model.named_modules(remove_duplicate=False)}
    return [p for p in getattr(model, _INSERTED, []) if p in names]
