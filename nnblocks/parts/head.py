"""Kind `head`: maps model features to outputs (logits, class scores, regression values).

Contract:

- Construction: ``Part(dim, out_features, **options)``; every option has a default.
- Call: ``part(x [..., D]) -> [..., out_features]``, position-wise (every leading axis is
  kept), same dtype and device as ``x``.
- A head that can be tied to an input embedding exposes ``.weight`` ``[out_features, D]``,
  the ``nn.Parameter`` of its last projection; a model ties it by putting the embedding's
  Parameter where that one is held (Press & Wolf 2017).

Built-ins: ``linear`` (one projection, optionally followed by an activation: BERT's pooler)
and ``mlp`` (projection, activation, optional norm, projection: the pooler-plus-classifier
of BERT and its masked-LM head, Devlin et al. 2019).
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.parts.boundary import check_positive_int, check_width
from nnblocks.registry import build, register
from nnblocks.spec import current_path

__all__ = ["LinearHead", "MLPHead"]


def _positive(name: str, value: Any, part: str) -> int:
    return check_positive_int(value, name, where=f"head part `{part}`")


class _Head(nn.Module):
    """Shared plumbing: the width check that names the slot."""

    part_name = ""

    def __init__(self, dim: int, out_features: int):
        super().__init__()
        self.dim = _positive("dim", dim, self.part_name)
        self.out_features = _positive("out_features", out_features, self.part_name)
        self._path = current_path()
        # The message's words, formatted once rather than at every forward.
        self._where = f"head part `{self.part_name}`"
        self._expected = f"input [..., {self.dim}]"

    def _check_input(self, x: torch.Tensor) -> None:
        check_width(x, self.dim, where=self._where, path=self._path, expected=self._expected)


@register("head", "linear")
class LinearHead(_Head):
    """One linear projection from features to outputs.

    Args:
        dim: input features D.
        out_features: outputs (vocabulary size, number of classes).
        bias: learn an additive bias. Language models usually leave it out (GPT-2 has none,
            and a tied head shares only the weight).
        activation: None, or an activation spec applied to the output (``"tanh"`` makes
            BERT's pooler, ``tanh(W x + b)``).

    Call arguments:
        x: ``[..., D]``.

    Returns:
        ``[..., out_features]``.

    Raises:
        SpecError: ``dim`` or ``out_features`` is not a positive integer.
        ShapeError: ``x`` does not end with ``dim`` features.

    Example:
        >>> head = nnblocks.build("linear", "head", dim=64, out_features=10)
        >>> head(torch.randn(2, 5, 64)).shape
        torch.Size([2, 5, 10])
    """

    part_name = "linear"
    linear_weight_only = True  # `weight` enters only F.linear: decoding may relay it

    def __init__(self, dim: int, out_features: int, bias: bool = True, activation: Any = None):
        super().__init__(dim, out_features)
        # Held directly (not in an nn.Linear) so a tied model names it `head.weight`.
        linear = nn.Linear(dim, out_features, bias=bias)  # nn.Linear's initialisation
        self.weight = linear.weight  # [out_features, D]
        self.bias = linear.bias  # [out_features] or None
        self.activation = (
            None if activation is None else build(activation, "activation", at="activation")
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        y = F.linear(x, self.weight, self.bias)  # [..., out_features]
        return y if self.activation is None else self.activation(y)

    def extra_repr(self) -> str:
        return f"{self.dim}, {self.out_features}, bias={self.bias is not None}"


@register("head", "mlp")
class MLPHead(_Head):
    """Projection, activation, dropout, projection: a small classifier on top of features.

    Args:
        dim: input features D.
        out_features: outputs.
        hidden: width of the hidden layer (default ``dim``, so the last projection can be
            tied to an embedding of width D).
        activation: an activation spec (default ``"tanh"``, BERT's pooler).
        dropout: dropout on the hidden layer while training.
        bias: learn additive biases.
        norm: None, or a norm spec applied to the hidden layer after the activation (BERT's
            masked-LM head: ``{"activation": "gelu", "norm": "layer"}``, tied to the
            embedding through ``.weight``); slot ``norm``.

    Call arguments:
        x: ``[..., D]``.

    Returns:
        ``[..., out_features]``.

    Raises:
        SpecError: a size is not a positive integer or ``activation`` is not an activation.
        ShapeError: ``x`` does not end with ``dim`` features.

    Example:
        >>> head = nnblocks.build({"name": "mlp", "hidden": 32}, "head", dim=64, out_features=3)
        >>> head(torch.randn(2, 64)).shape
        torch.Size([2, 3])
    """

    part_name = "mlp"

    def __init__(
        self,
        dim: int,
        out_features: int,
        hidden: int | None = None,
        activation: Any = "tanh",
        dropout: float = 0.0,
        bias: bool = True,
        norm: Any = None,
    ):
        super().__init__(dim, out_features)
        hidden = dim if hidden is None else _positive("hidden", hidden, self.part_name)
        self.hidden = nn.Linear(dim, hidden, bias=bias)
        self.activation = build(activation, "activation", at="activation")
        self.norm = None if norm is None else build(norm, "norm", at="norm", dim=hidden)
        self.dropout = nn.Dropout(dropout)
        self.proj = nn.Linear(hidden, out_features, bias=bias)

    @property
    def weight(self) -> torch.Tensor:
        """The last projection's weight ``[out_features, hidden]`` (what a tie replaces)."""
        return self.proj.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input(x)
        h = self.activation(self.hidden(x))  # [..., hidden]
        if self.norm is not None:
            h = self.norm(h)
        h = self.dropout(h)
        return self.proj(h)  # [..., out_features]
