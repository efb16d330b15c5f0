"""Contract and built-in parts of kind `activation`.

Contract:

- Construction: ``Part(**options)``; every option has a default, so a bare name such as
  ``"relu"`` is a complete spec.
- Call: ``part(x) -> y`` element-wise: ``y`` has the shape, dtype and device of ``x``.
- No parameters and no state: one instance may be called at several places.

Parts that take an activation (feedforward networks, models) accept any activation spec
(``"gelu"``, ``{"name": "gelu", "approximate": "tanh"}``, a module class or instance) and
build it with ``nnblocks.build(spec, "activation", at="activation")``.

Built-ins: ``relu``, ``gelu``, ``silu`` (also ``swish``), ``tanh``, ``sigmoid``,
``identity``, ``leaky_relu``, ``mish``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.parts._docs import shared_sections
from nnblocks.parts.boundary import check_value
from nnblocks.registry import register

__all__ = [
    "ReLU",
    "GELU",
    "SiLU",
    "Tanh",
    "Sigmoid",
    "Identity",
    "LeakyReLU",
    "Mish",
]


_CALL_DOC = """
    Call arguments:
        x: a tensor of any shape.

    Returns:
        {returns}.
"""

_EXAMPLE = """
    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("{name}", "activation")
"""

_SAME = "A tensor of the same shape, dtype and device"
_T = TypeVar("_T", bound=type)


def _elementwise(name: str, returns: str = _SAME) -> Callable[[_T], _T]:
    """Register a class as activation ``name`` and complete its docstring.

    The call documentation is the same for every activation, and an option-free one's
    example only names it, so both are written here once; a class that writes its own
    ``Example:`` keeps it.

    Args:
        name: the registered name.
        returns: what the call returns, in words.
    """

    def decorate(cls: _T) -> _T:
        shared_sections(_CALL_DOC.format(returns=returns))(cls)
        if cls.__doc__ is not None and "Example:" not in cls.__doc__:
            cls.__doc__ = cls.__doc__.rstrip() + "\n" + _EXAMPLE.format(name=name) + "    "
        return register("activation", name)(cls)

    return decorate


class _Elementwise(nn.Module):
    """An option-free activation: ``forward`` applies the class's ``function``."""

    function: Callable[[torch.Tensor], torch.Tensor]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.function(x)


@_elementwise("relu")
class ReLU(_Elementwise):
    """Rectified linear unit, ``max(x, 0)``.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("relu", "activation")
        >>> act(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    function = staticmethod(F.relu)


@_elementwise("gelu")
class GELU(nn.Module):
    """Gaussian error linear unit, ``x * Phi(x)`` (Hendrycks & Gimpel 2016).

    Args:
        approximate: ``"none"`` for the exact erf form, ``"tanh"`` for the tanh
            approximation used by BERT and GPT-2.

    Raises:
        SpecError: ``approximate`` is neither ``"none"`` nor ``"tanh"``.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build({"name": "gelu", "approximate": "tanh"}, "activation")
    """

    def __init__(self, approximate: str = "none"):
        super().__init__()
        check_value(
            approximate in ("none", "tanh"),
            approximate,
            "approximate",
            where="activation part `gelu`",
            expected="'none' or 'tanh'",
        )
        self.approximate = approximate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


@_elementwise("silu")
class SiLU(_Elementwise):
    """Sigmoid linear unit (swish), ``x * sigmoid(x)`` (Elfwing et al. 2017; Ramachandran et al. 2017)."""

    function = staticmethod(F.silu)


# The same function under the name the Swish paper gave it.
register("activation", "swish")(SiLU)


@_elementwise("tanh", returns=_SAME + ", with values in ``(-1, 1)``")
class Tanh(_Elementwise):
    """Hyperbolic tangent."""

    function = staticmethod(torch.tanh)


@_elementwise("sigmoid", returns=_SAME + ", with values in ``(0, 1)``")
class Sigmoid(_Elementwise):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``."""

    function = staticmethod(torch.sigmoid)


@_elementwise("identity", returns="``x`` itself")
class Identity(nn.Module):
    """No non-linearity: returns its input unchanged (a linear baseline in ablations)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@_elementwise("leaky_relu")
class LeakyReLU(nn.Module):
    """Leaky ReLU, ``x`` for ``x >= 0`` and ``negative_slope * x`` below (Maas et al. 2013).

    Args:
        negative_slope: the slope for negative inputs.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build({"name": "leaky_relu", "negative_slope": 0.2}, "activation")
    """

    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = float(negative_slope)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(x, self.negative_slope)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


@_elementwise("mish")
class Mish(_Elementwise):
    """Mish, ``x * tanh(softplus(x))`` (Misra 2019)."""

    function = staticmethod(F.mish)
