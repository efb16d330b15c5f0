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


def special_ids(**ids: Any) -> tuple[int | None, ...]:
    """The special token ids (``pad_id=..., bos_id=..., eos_id=...``), each None or an int.

    Only the type is checked here: an id beyond a small vocabulary is what imported configs
    carry (GPT-2's 50256 in a test-sized model), and it matters only where it is used (the
    embedding checks ``pad_id``, ``generate`` checks the ``bos_id`` it feeds).

    Raises:
        SpecError: an id that is a bool, a float or a string, naming it.
    """
    for name, value in ids.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
            raise SpecError(
                f"Received an invalid value for `{name}`: expected None or an integer token "
                f"id. Received: {name}={value!r}",
                path=current_path() or None,
            )
    return tuple(ids.values())


def received(value: Any) -> str:
    """``"shape (2, 7), dtype torch.int64"`` for a tensor, else its type name (``"None"``).

    What the ``Received: ...`` end of a model's ShapeError says about a bad input.
    """
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}, dtype {value.dtype}"
    return "None" if value is None else type(value).__name__
