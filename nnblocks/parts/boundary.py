"""Checks at the boundaries of parts and models: the right inputs in, an output that fits out.

A wrong input should fail where it enters, naming the part and what it expects, not deep
inside ``nn.Linear`` with a torch message about matrix sizes. These few functions are
called at the entry points (attention, block, model forward) and by the commands that call a
model (``nnblocks export``):

    check_flag(causal, "causal", where="attention part `mha`")        # True/False only
    check_positive_int(dim, "dim", where="norm part `rms`")          # a constructor option
    check_features(x, "x", where=..., dim=256)                        # float [..., 256]
    check_tokens(tokens, "tokens", where=...)                         # integer ids [B, T]
    check_arity(model, inputs, where=...)                             # how many inputs
    check_slot_output(out, slot="decoder.layers.0.self_attention", like=x)

Each raises ``ShapeError`` (a tensor) or ``SpecError`` (a flag, an argument count) with the
place, what was expected and what was received.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import torch

from nnblocks.errors import ShapeError, SpecError
from nnblocks.spec import current_path

__all__ = [
    "check_flag",
    "check_value",
    "check_positive_int",
    "check_probability",
    "is_positive_int",
    "check_width",
    "check_features",
    "check_tokens",
    "check_arity",
    "describe_inputs",
    "check_slot_output",
]


def check_flag(value: Any, name: str, *, where: str) -> bool:
    """``value`` must be a bool (``"yes"``, 1 or a tensor are refused, not read as true).

    Raises:
        SpecError: not a bool.
    """
    if not isinstance(value, bool):
        raise SpecError(
            f"Received an invalid value for `{name}` of {where}: expected True or False. "
            f"Received: {name}={value!r} ({type(value).__name__})"
        )
    return value


def check_value(ok: bool, value: Any, name: str, *, where: str, expected: str) -> None:
    """Raise the one option error of every part unless ``ok``.

    Args:
        ok: whether ``value`` is acceptable.
        value: what the user passed for the constructor argument ``name``.
        name: the argument, e.g. ``"eps"``.
        where: the part, e.g. ``"norm part `rms`"``.
        expected: what would be acceptable, in words.

    Raises:
        SpecError: ``ok`` is False: "Received an invalid value for `eps` of norm part `rms`:
            expected ... Received: eps=-1", with the spec path of the build in progress.
    """
    if not ok:
        raise SpecError(
            f"Received an invalid value for `{name}` of {where}: expected {expected}. "
            f"Received: {name}={value!r}",
            path=current_path() or None,
        )


def is_positive_int(value: Any) -> bool:
    """A positive ``int`` (``True`` is an int to Python, not a size to us)."""
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def check_positive_int(value: Any, name: str, *, where: str) -> int:
    """``value`` must be a positive integer; return it.

    Raises:
        SpecError: anything else (see ``check_value``).
    """
    check_value(is_positive_int(value), value, name, where=where, expected="a positive integer")
    return value  # type: ignore[no-any-return]


def check_probability(value: Any, name: str, *, where: str) -> float:
    """``value`` must be a probability in ``[0, 1)`` (a dropout or drop-path rate); return it
    as a float.

    Raises:
        SpecError: anything else, ``True``/``False`` included (see ``check_value``).
    """
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value < 1
    check_value(ok, value, name, where=where, expected="a probability in [0, 1)")
    return float(value)


def check_width(
    x: torch.Tensor, dim: int, *, where: str, path: str, expected: str, axis: int = -1
) -> None:
    """``x`` has ``dim`` features on ``axis`` (the last, or 1 for channels-first layouts).

    A comparison per call (and a short string); it turns torch's opaque size error into one
    that names the part and its slot.

    Args:
        where: the part, e.g. ``"norm part `rms`"``.
        path: the slot the part was built at (``current_path()`` then), or ``""``.
        expected: the expected input, in words, e.g. ``"input [..., 64]"``.

    Raises:
        ShapeError: too few axes, or another width on ``axis``.
    """
    if x.dim() < (1 if axis == -1 else axis + 1) or x.shape[axis] != dim:
        at = f" at `{path}`" if path else ""
        raise ShapeError(f"{where}{at}: expected {expected}. Received: shape {tuple(x.shape)}")


def _shape(x: torch.Tensor) -> str:
    return f"[{', '.join(str(n) for n in x.shape)}] {str(x.dtype).removeprefix('torch.')}"


def check_features(
    x: Any, name: str, *, where: str, dim: int | None = None, rank: int | None = 3
) -> None:
    """``x`` is a floating-point tensor of rank ``rank`` whose last axis has ``dim`` features.

    Raises:
        ShapeError: not a tensor, integer or bool dtype, wrong rank or width.
    """

    def expected() -> str:  # formatted only on failure: this runs in every forward
        width = dim if dim is not None else "D"
        return f"a float tensor [B, T, {width}]" if rank == 3 else f"a float tensor [..., {width}]"

    if not isinstance(x, torch.Tensor):
        raise ShapeError(
            f"Received an invalid `{name}` for {where}: expected {expected()}. "
            f"Received: {type(x).__name__}"
        )
    bad = (
        not (x.is_floating_point() or x.is_complex())
        or (rank is not None and x.dim() != rank)
        or (dim is not None and (x.dim() == 0 or x.shape[-1] != dim))
    )
    if bad:
        hint = " (token ids go to an embedding first)" if not x.is_floating_point() else ""
        raise ShapeError(
            f"Received an invalid `{name}` for {where}: expected {expected()}{hint}. "
            f"Received: {_shape(x)}"
        )


def check_tokens(x: Any, name: str, *, where: str, rank: int = 2) -> None:
    """``x`` is an integer tensor of token ids ``[B, T]``.

    Raises:
        ShapeError: not a tensor, a float or bool dtype, or the wrong rank.
    """
    ok = (
        isinstance(x, torch.Tensor)
        and not x.is_floating_point()
        and not x.is_complex()
        and x.dtype is not torch.bool
        and x.dim() == rank
    )
    if not ok:
        got = _shape(x) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ShapeError(
            f"Received an invalid `{name}` for {where}: expected integer token ids "
            f"[B, T] (torch.long). Received: {got}"
        )


def _inputs(fn: Any) -> tuple[list[str], list[str], bool]:
    """(required positional names, optional positional names, takes *args) of ``fn``."""
    target = fn.forward if isinstance(fn, torch.nn.Module) else fn
    try:
        params = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return [], [], True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    required = [p.name for p in positional if p.default is p.empty]
    optional = [p.name for p in positional if p.default is not p.empty]
    return required, optional, any(p.kind is p.VAR_POSITIONAL for p in params)


def describe_inputs(fn: Any) -> str:
    """``"2 inputs: src, tgt_in"``: what a model's forward takes."""
    required, optional, star = _inputs(fn)
    names = ", ".join(required + [f"{n} (optional)" for n in optional])
    count = len(required)
    if star or optional:
        return f"at least {count} input{'s' if count != 1 else ''}: {names or '*args'}"
    return f"{count} input{'s' if count != 1 else ''}: {names}"


def check_arity(fn: Any, args: Sequence[Any], *, where: str) -> None:
    """``fn(*args)`` gets as many positional inputs as it takes.

    Raises:
        SpecError: too few or too many, naming the inputs ``fn`` takes.
    """
    required, optional, star = _inputs(fn)
    n = len(args)
    if n < len(required) or (not star and n > len(required) + len(optional)):
        name = type(fn).__name__ if isinstance(fn, torch.nn.Module) else getattr(fn, "__name__", "")
        raise SpecError(
            f"{name} takes {describe_inputs(fn)}. Received: {n} input{'s' if n != 1 else ''}",
            path=where,
        )


def check_slot_output(out: Any, *, slot: str, like: torch.Tensor, what: str = "") -> None:
    """The output of the part in ``slot`` has the shape of ``like`` (what the slot carries on).

    Raises:
        ShapeError: not a tensor, or another shape (rank, batch, length or width), naming
            the slot.
    """
    # The whole shape: a residual sum would broadcast another length (two positions for
    # the one a decoding step feeds) into a wrong result instead of an error.
    if isinstance(out, torch.Tensor) and out.shape == like.shape:
        return
    got = _shape(out) if isinstance(out, torch.Tensor) else type(out).__name__
    raise ShapeError(
        f"the part in slot `{slot}`{f' ({what})' if what else ''} returned an output that does "
        f"not fit the slot: expected a tensor shaped like its input {_shape(like)}. "
        f"Received: {got}"
    )
