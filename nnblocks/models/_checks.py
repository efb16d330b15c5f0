"""Small checks every model shares: option values and how a bad input is described.

Private to ``nnblocks.models``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from nnblocks.errors import SpecError
from nnblocks.spec import current_path

__all__ = ["is_none", "positive_int", "special_ids", "received"]


def is_none(spec: Any) -> bool:
    """Whether an optional slot's spec means "no part": None or the string ``"none"``."""
    return spec is None or (isinstance(spec, str) and spec.strip().lower() == "none")


def positive_int(name: str, value: Any, *, minimum: int = 1, model: str | None = None) -> int:
    """``value`` as an int >= ``minimum``, or a SpecError naming the option (and ``model``).

    Raises:
        SpecError: ``value`` is a bool, not an int, or below ``minimum``; its path is the
            current spec path, else ``model``.
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        of = "" if model is None else f" of model `{model}`"
        raise SpecError(
            f"Received an invalid value for `{name}`{of}: expected {what}. "
            f"Received: {name}={value!r}",
            path=current_path() or model or None,
        )
    return value


def special_ids(**ids: Any) -> tuple[Any, ...]:
    """The special token ids (``pad_id=..., bos_id=..., eos_id=...``), each None or an int;
    ``eos_id`` may also be a non-empty list of ints (each ends a sequence, as in Llama 3).

    Only the type is checked here: an id beyond a small vocabulary is what imported configs
    carry (GPT-2's 50256 in a test-sized model), and it matters only where it is used (the
    embedding checks ``pad_id``, ``generate`` checks the ``bos_id`` it feeds).

    Raises:
        SpecError: an id that is a bool, a float or a string, naming it.
    """
    out = []
    for name, value in ids.items():
        several = name == "eos_id" and isinstance(value, (list, tuple)) and len(value) > 0
        values = list(value) if several else [value]
        if any(v is not None and (isinstance(v, bool) or not isinstance(v, int)) for v in values):
            or_list = " (or a list of them)" if name == "eos_id" else ""
            raise SpecError(
                f"Received an invalid value for `{name}`: expected None or an integer token "
                f"id{or_list}. Received: {name}={value!r}",
                path=current_path() or None,
            )
        out.append(values if several else value)
    return tuple(out)


def received(value: Any) -> str:
    """``"shape (2, 7), dtype torch.int64"`` for a tensor, else its type name (``"None"``).

    What the ``Received: ...`` end of a model's ShapeError says about a bad input.
    """
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}, dtype {value.dtype}"
    return "None" if value is None else type(value).__name__
