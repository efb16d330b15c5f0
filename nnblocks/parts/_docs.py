"""Docstring sections shared by sibling parts, written once.

Parts of one family (the feature norms, the feedforward units, the element-wise
activations) take the same call arguments, return the same thing and raise the same
errors. Their common sections live in one constant per family; the class decorator
``shared_sections`` puts that text into each class's docstring at import time, where
``help()``, doctest and the registry read it. Each class keeps its own summary, Args and
Example.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

__all__ = ["shared_sections"]

_T = TypeVar("_T", bound=type)

# Where a shared block goes: before the first of these sections the class writes itself.
_ANCHORS = ("    Returns:", "    Raises:", "    Example:")


def shared_sections(text: str) -> Callable[[_T], _T]:
    """Class decorator: insert the sections ``text`` into the class's own docstring.

    The text goes before the first of the class's own ``Returns:``, ``Raises:`` and
    ``Example:`` sections, so the sections keep their usual order; else at the end.

    Args:
        text: one or more docstring sections, indented as in a class body (4 spaces for a
            section title such as ``Call arguments:``, 8 for its lines).

    Returns:
        The decorator, which returns the class itself with ``__doc__`` extended.
    """

    def decorate(cls: _T) -> _T:
        if cls.__doc__ is None:  # docstrings stripped (python -OO): nothing to extend
            return cls
        doc = cls.__doc__.rstrip()
        block = "\n" + text.strip("\n") + "\n"
        for anchor in _ANCHORS:
            head, found, tail = doc.partition("\n" + anchor)
            if found:
                cls.__doc__ = head.rstrip() + "\n" + block + found + tail + "\n    "
                return cls
        cls.__doc__ = doc + "\n" + block + "    "
        return cls

    return decorate
