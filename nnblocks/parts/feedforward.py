"""Contract and built-in parts of kind `feedforward`.

Contract:

- Construction: ``Part(dim, hidden=None, activation="gelu", dropout=0.0, bias=True)``;
  ``hidden=None`` picks the part's own default width, ``activation`` is any activation
  spec (a name, a dict, a module class or instance), ``dropout`` applies to the hidden
  activations.
- Call: ``part(x) -> y`` position-wise, ``x`` and ``y`` ``[B, T, D]`` (any leading axes);
  ``y`` keeps the dtype and device of ``x``.
- No state between calls.
- A wrong feature width raises ``ShapeError`` naming the part, its slot, the expected width
  and the received shape.

Built-ins: ``mlp`` (Linear-activation-dropout-Linear, Vaswani et al. 2017), and the gated
linear units of Shazeer 2020, ``swiglu`` (gate activation SiLU) and ``geglu`` (GELU).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from nnblocks.parts._docs import shared_sections
from nnblocks.parts.boundary import check_positive_int, check_probability, check_width
from nnblocks.registry import build, register
from nnblocks.spec import current_path

__all__ = ["MLP", "SwiGLU", "GEGLU", "gated_hidden"]


def gated_hidden(dim: int) -> int:
    """The default hidden width of a gated feedforward: 8/3 * dim rounded up to a multiple of 8.

    A gated unit has three weight matrices instead of two; 2/3 of the MLP's usual ``4 * dim``
    keeps the parameter count (and FLOPs) of the plain MLP (Shazeer 2020, section 2), and a
    multiple of 8 keeps the matrix shapes friendly to tensor cores.

    Args:
        dim: model width D.

    Returns:
        ``8 * ceil(dim / 3)``, e.g. 1368 for ``dim=512``.
    """
    return 8 * math.ceil(dim / 3)


def _check_options(dim: int, hidden: int, dropout: float, part: str) -> None:
    where = f"feedforward part `{part}`"
    check_positive_int(dim, "dim", where=where)
    check_positive_int(hidden, "hidden", where=where)
    check_probability(dropout, "dropout", where=where)


_CALL_DOC = """
    Call arguments:
        x: ``[B, T, D]`` (any leading axes).

    Returns:
        ``[B, T, D]``, same dtype and device as ``x``.

    Raises:
        SpecError: a non-positive width, a dropout outside ``[0, 1)``, or a bad activation
            spec (with its spec path).
        ShapeError: ``x`` does not end in ``dim`` features.
"""


class _FeedForward(nn.Module):
    """Shared plumbing: the input check that names the slot."""

    part_name = ""

    def __init__(self, dim: int):
        super().__init__()
        self.dim = dim
        self._path = current_path()  # the slot, for error messages at call time
        # The message's words, formatted once rather than at every forward.
        self._where = f"feedforward part `{self.part_name}`"
        self._expected = f"input [..., D] with D={dim}"

    def _check_input(self, x: torch.Tensor) -> None:
        check_width(x, self.dim, where=self._where, path=self._path, expected=self._expected)

    def _setup(
        self, hidden: int, activation: Any, dropout: float, bias: bool, *, gated: bool
    ) -> None:
        """Check the options, then ``up`` (twice as wide when ``gated``: gate and value),
        the activation, the dropout and ``down``, in this order (it fixes the init draws)."""
        _check_options(self.dim, hidden, dropout, self.part_name)
        self.hidden = hidden
        self.up = nn.Linear(self.dim, (2 if gated else 1) * hidden, bias=bias)
        self.activation = build(activation, "activation", at="activation")
        self.dropout = build({"name": "dropout", "p": dropout}, "regularization", at="dropout")
        self.down = nn.Linear(hidden, self.dim, bias=bias)


@register("feedforward", "mlp")
@shared_sections(_CALL_DOC)
class MLP(_FeedForward):
    """Position-wise two-layer network, Linear-activation-dropout-Linear (Vaswani et al. 2017).

    Args:
        dim: model width D (input and output).
        hidden: hidden width; ``None`` means ``4 * dim`` as in the original transformer.
        activation: activation spec for the hidden layer (``"gelu"``, ``"relu"``,
            ``{"name": "gelu", "approximate": "tanh"}``, ...).
        dropout: dropout probability on the hidden activations.
        bias: learn biases in both linear layers.

    Example:
        >>> import torch, nnblocks
        >>> ff = nnblocks.build({"name": "mlp", "activation": "relu"}, "feedforward", dim=64)
        >>> ff(torch.randn(2, 5, 64)).shape
        torch.Size([2, 5, 64])
    """

    part_name = "mlp"

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        activation: Any = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(dim)
        hidden = 4 * dim if hidden is None and isinstance(dim, int) else hidden
        self._setup(hidden, activation, dropout, bias, gated=False)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        h = self.activation(self.up(x))  # [B, T, hidden]
        if self.training:  # regularization parts are the identity in eval: skip the call
            h = self.dropout(h)
        return self.down(h)  # [B, T, D]


@register("feedforward", "swiglu")
@shared_sections(_CALL_DOC)
class SwiGLU(_FeedForward):
    """Gated linear unit with a SiLU gate, ``down(act(x W) * (x V))`` (Shazeer 2020).

    The gate and value projections are one fused ``Linear(dim, 2 * hidden)`` (``up``; the
    first ``hidden`` outputs are the gate), so the unit costs one matmul on the way up.

    Args:
        dim: model width D (input and output).
        hidden: hidden width; ``None`` means ``gated_hidden(dim)`` = 8/3 * dim rounded up
            to a multiple of 8, which matches the parameter count of an ``mlp`` with
            ``4 * dim``.
        activation: activation spec of the gate (SiLU here; GELU gives ``geglu``).
        dropout: dropout probability on the gated hidden activations.
        bias: learn biases in the linear layers (the paper uses none: pass ``bias=False``).

    Example:
        >>> import torch, nnblocks
        >>> ff = nnblocks.build("swiglu", "feedforward", dim=48)
        >>> ff.hidden, ff(torch.randn(2, 5, 48)).shape
        (128, torch.Size([2, 5, 48]))
    """

    part_name = "swiglu"

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        activation: Any = "silu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(dim)
        hidden = gated_hidden(dim) if hidden is None and isinstance(dim, int) else hidden
        self._setup(hidden, activation, dropout, bias, gated=True)  # type: ignore[arg-type]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        gate, value = self.up(x).chunk(2, dim=-1)  # 2 x [B, T, hidden]
        h = self.activation(gate) * value  # [B, T, hidden]
        if self.training:  # regularization parts are the identity in eval: skip the call
            h = self.dropout(h)
        return self.down(h)  # [B, T, D]


@register("feedforward", "geglu")
class GEGLU(SwiGLU):
    """Gated linear unit with a GELU gate, ``down(gelu(x W) * (x V))`` (Shazeer 2020).

    The same unit as ``swiglu`` with ``activation="gelu"`` by default; see ``SwiGLU`` for
    the arguments, the call and the errors.

    Example:
        >>> import torch, nnblocks
        >>> ff = nnblocks.build("geglu", "feedforward", dim=48)
        >>> ff(torch.randn(2, 5, 48)).shape
        torch.Size([2, 5, 48])
    """

    part_name = "geglu"

    def __init__(
        self,
        dim: int,
        hidden: int | None = None,
        activation: Any = "gelu",
        dropout: float = 0.0,
        bias: bool = True,
    ):
        super().__init__(dim, hidden, activation, dropout, bias)
