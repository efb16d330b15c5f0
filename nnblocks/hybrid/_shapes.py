"""Input names and dynamic axes shared by the exporters.

By the batch-first contract (DESIGN.md) axis 0 of every tensor input is the batch, and
axis 1 of a sequence is its time axis: token ids ``[B, T]`` (integer) and vectors
``[B, T, D]``. A float ``[B, F]`` is a feature vector and an image ``[B, C, H, W]`` has
channels at axis 1, so neither gets a dynamic axis 1 by default.

Axes are written ``{input name: {axis: dimension name}}``. One name shared by several
inputs means one size (every input's batch is ``batch``); each sequence gets its own name
(``src_len``, ``tgt_len``), since a seq2seq model's source and target lengths differ.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from nnblocks.errors import SpecError
from nnblocks.hybrid._state import as_args

__all__ = [
    "DynamicAxes",
    "dynamic_axes_for",
    "export_inputs",
    "input_names",
    "to_dynamic_shapes",
]

DynamicAxes = dict[str, dict[int, str]]

_IDENTIFIER = re.compile(r"[^0-9a-zA-Z_]")


def input_names(model: nn.Module, args: Sequence[Any]) -> list[str]:
    """A name per positional argument, from the parameters of ``model.forward``.

    Arguments that fill ``*args`` (or outnumber the parameters) are ``input_<i>``.
    """
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        params = []
    positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return [positional[i] if i < len(positional) else f"input_{i}" for i in range(len(args))]


def _is_sequence(t: torch.Tensor) -> bool:
    return t.dim() == 3 or (t.dim() == 2 and not (t.is_floating_point() or t.is_complex()))


def export_inputs(
    model: nn.Module,
    example_inputs: Any,
    *,
    batch: bool,
    sequence: bool,
    overrides: Mapping[str | int, Mapping[int, str] | Sequence[int]] | None,
    where: str,
) -> tuple[tuple[Any, ...], list[str], DynamicAxes]:
    """An exporter's example as positional arguments, with their names and dynamic axes.

    Args:
        model: the model whose ``forward`` names the inputs.
        example_inputs: one batch of positional arguments (a tensor or a tuple).
        batch, sequence, overrides, where: as ``dynamic_axes_for``.

    Returns:
        ``(args, names, axes)``.

    Raises:
        SpecError: bad ``overrides``, or an example with size 1 on a dynamic axis.
    """
    args = as_args(example_inputs)
    names = input_names(model, args)
    axes = dynamic_axes_for(
        args, names, batch=batch, sequence=sequence, overrides=overrides, where=where
    )
    return args, names, axes


def dynamic_axes_for(
    args: Sequence[Any],
    names: Sequence[str],
    *,
    batch: bool,
    sequence: bool,
    overrides: Mapping[str | int, Mapping[int, str] | Sequence[int]] | None,
    where: str,
) -> DynamicAxes:
    """The dynamic axes of each tensor input.

    Args:
        args: the example arguments.
        names: their names (``input_names``).
        batch: axis 0 of every tensor input is ``batch``.
        sequence: axis 1 of every sequence input (``[B, T]`` integer, ``[B, T, D]``) is
            ``<name>_len``.
        overrides: per input (by name or position) its own axes, replacing the defaults:
            ``{axis: dimension name}`` or a list of axes (named ``<name>_<axis>``); an
            empty dict makes the input static.
        where: the caller, for messages (``export_onnx``).

    Raises:
        SpecError: an override names an unknown input, a non-tensor, or an axis the input
            does not have; or the example has size 1 on a dynamic axis (torch.export would
            fix it to 1).
    """
    tensors = {n: a for n, a in zip(names, args) if isinstance(a, torch.Tensor)}
    axes: DynamicAxes = {}
    for name, t in tensors.items():
        chosen: dict[int, str] = {}
        if batch and t.dim() >= 1:
            chosen[0] = "batch"
        if sequence and _is_sequence(t):
            chosen[1] = f"{_IDENTIFIER.sub('_', name)}_len"
        axes[name] = chosen
    for key, value in (overrides or {}).items():
        name = _resolve(key, names, tensors, where)
        rank = tensors[name].dim()
        if isinstance(value, Mapping):
            given = {int(a): str(d) for a, d in value.items()}
        else:
            given = {int(a): f"{_IDENTIFIER.sub('_', name)}_{int(a)}" for a in value}
        for axis in given:
            if not -rank <= axis < rank:
                raise SpecError(
                    f"input `{name}` has {rank} axes, so it has no axis {axis}. Expected an "
                    f"axis in [0, {rank}). Received: dynamic_axes={dict(overrides or {})!r}",
                    path=f"{where}.dynamic_axes",
                )
        axes[name] = {a % rank: _IDENTIFIER.sub("_", d) for a, d in given.items()}
    for name, chosen in axes.items():
        for axis, dim in chosen.items():
            size = tensors[name].shape[axis]
            if size < 2:
                raise SpecError(
                    f"input `{name}` has size {size} on its dynamic axis {axis} (`{dim}`); "
                    "torch.export fixes sizes 0 and 1 to constants, so the export would "
                    "not be dynamic. Expected an example with size >= 2 there (e.g. a batch "
                    "of 2 and a length of 2 or more), or leave the axis static.",
                    path=f"{where}.example_inputs",
                )
    return axes


def _resolve(
    key: str | int, names: Sequence[str], tensors: Mapping[str, torch.Tensor], where: str
) -> str:
    if isinstance(key, int) and not isinstance(key, bool) and 0 <= key < len(names):
        name = names[key]
    elif isinstance(key, str) and key in names:
        name = key
    else:
        raise SpecError(
            f"`dynamic_axes` names input {key!r}, which the model call does not have. "
            f"Expected one of {list(names)} or a position in [0, {len(names)}).",
            path=f"{where}.dynamic_axes",
        )
    if name not in tensors:
        raise SpecError(
            f"`dynamic_axes` names input `{name}`, which is not a tensor in the example, "
            "so it has no axes.",
            path=f"{where}.dynamic_axes",
        )
    return name


def to_dynamic_shapes(
    args: Sequence[Any], names: Sequence[str], axes: DynamicAxes
) -> tuple[Any, ...] | None:
    """``dynamic_shapes`` for ``torch.export``: one ``{axis: Dim}`` per argument.

    One ``torch.export.Dim`` object per dimension name, so inputs sharing a name are
    constrained to one size. None when nothing is dynamic.
    """
    if not any(axes.values()):
        return None
    dims: dict[str, Any] = {}
    shapes: list[Any] = []
    for name, arg in zip(names, args):
        chosen = axes.get(name) if isinstance(arg, torch.Tensor) else None
        if not chosen:
            shapes.append(None)
            continue
        shapes.append(
            {axis: dims.setdefault(dim, torch.export.Dim(dim)) for axis, dim in chosen.items()}
        )
    return tuple(shapes)
