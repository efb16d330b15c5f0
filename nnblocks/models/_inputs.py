"""How a model's input checks show what they received (one wording for every model).

Private to ``nnblocks.models``.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

__all__ = ["received"]


def received(value: Any) -> str:
    """``"shape (2, 7), dtype torch.int64"`` for a tensor, else its type name (``"None"``).

    What the ``Received: ...`` end of a model's ShapeError says about a bad input.
    """
    if isinstance(value, Tensor):
        return f"shape {tuple(value.shape)}, dtype {value.dtype}"
    return "None" if value is None else type(value).__name__
