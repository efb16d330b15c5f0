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

import torch
import torch.nn.functional as F
from torch import nn

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


@register("activation", "relu")
class ReLU(nn.Module):
    """Rectified linear unit, ``max(x, 0)``.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("relu", "activation")
        >>> act(torch.tensor([-1.0, 2.0]))
        tensor([0., 2.])
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(x)


@register("activation", "gelu")
class GELU(nn.Module):
    """Gaussian error linear unit, ``x * Phi(x)`` (Hendrycks & Gimpel 2016).

    Args:
        approximate: ``"none"`` for the exact erf form, ``"tanh"`` for the tanh
            approximation used by BERT and GPT-2.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device.

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


@register("activation", "silu")
class SiLU(nn.Module):
    """Sigmoid linear unit (swish), ``x * sigmoid(x)`` (Elfwing et al. 2017; Ramachandran et al. 2017).

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("silu", "activation")
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.silu(x)


# The same function under the name the Swish paper gave it.
register("activation", "swish")(SiLU)


@register("activation", "tanh")
class Tanh(nn.Module):
    """Hyperbolic tangent.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device, with values in ``(-1, 1)``.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("tanh", "activation")
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(x)


@register("activation", "sigmoid")
class Sigmoid(nn.Module):
    """Logistic sigmoid, ``1 / (1 + exp(-x))``.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device, with values in ``(0, 1)``.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("sigmoid", "activation")
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(x)


@register("activation", "identity")
class Identity(nn.Module):
    """No non-linearity: returns its input unchanged (a linear baseline in ablations).

    Call arguments:
        x: a tensor of any shape.

    Returns:
        ``x`` itself.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("identity", "activation")
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x


@register("activation", "leaky_relu")
class LeakyReLU(nn.Module):
    """Leaky ReLU, ``x`` for ``x >= 0`` and ``negative_slope * x`` below (Maas et al. 2013).

    Args:
        negative_slope: the slope for negative inputs.

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device.

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


@register("activation", "mish")
class Mish(nn.Module):
    """Mish, ``x * tanh(softplus(x))`` (Misra 2019).

    Call arguments:
        x: a tensor of any shape.

    Returns:
        A tensor of the same shape, dtype and device.

    Example:
        >>> import torch, nnblocks
        >>> act = nnblocks.build("mish", "activation")
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.mish(x)
