"""Model `mlp`: a multilayer perceptron for tabular data with categorical embeddings.

Numeric columns enter as they are (normalise them in the data pipeline, fitted on the
training split); each categorical column gets its own embedding, and the concatenation goes
through ``Linear -> norm -> activation -> dropout`` layers to a linear head (Guo & Berkhahn
2016, "Entity Embeddings of Categorical Variables").

Other kinds have an ``mlp`` part too, so build it with ``kind="model"`` (recipes and
checkpoints do) or write ``"model/mlp"``.

Slots (module paths): ``embeddings.{i}`` (one per categorical column),
``layers.{i}.linear|norm|activation|dropout`` and ``head``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from nnblocks.errors import ShapeError, SpecError
from nnblocks.models._checks import is_none, received
from nnblocks.registry import build, register
from nnblocks.spec import current_path, spec_path

__all__ = ["TabularMLP", "embedding_size"]

_NAME = "mlp"
_DEFAULT_HIDDEN = (256, 128)


def embedding_size(cardinality: int) -> int:
    """Embedding width for a categorical column with ``cardinality`` distinct values.

    The empirical rule of the fastai library (Howard & Gugger 2020, "fastai: A Layered API
    for Deep Learning", tabular models): ``min(600, round(1.6 * n ** 0.56))``.

    Example:
        >>> embedding_size(10), embedding_size(1000)
        (6, 77)
    """
    return min(600, round(1.6 * cardinality**0.56))


def _int_list(value: Any, name: str, path: str, *, minimum: int) -> list[int]:
    items = list(value) if isinstance(value, Sequence) and not isinstance(value, str) else None
    if items is None or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in items
    ):
        raise SpecError(
            f"Received an invalid value for `{name}` of model `{_NAME}`: expected a list of "
            f"integers >= {minimum}. Received: {name}={value!r}",
            path=path,
        )
    return items


class _Layer(nn.Module):
    """``Linear -> norm -> activation -> dropout``: one hidden layer."""

    def __init__(self, c_in: int, c_out: int, norm: Any, activation: Any, dropout: float):
        super().__init__()
        self.norm = None if is_none(norm) else build(norm, "norm", at="norm", dim=c_out)
        self.linear = nn.Linear(c_in, c_out, bias=self.norm is None)  # a norm re-centres
        self.activation = build(activation, "activation", at="activation")
        self.dropout = build({"name": "dropout", "p": dropout}, "regularization", at="dropout")

    def forward(self, x: Tensor) -> Tensor:
        x = self.linear(x)  # [B, c_out]
        if self.norm is not None:
            x = self.norm(x)
        return self.dropout(self.activation(x))


@register("model", _NAME)
class TabularMLP(nn.Module):
    """MLP for tabular rows: numeric features plus embedded categorical columns.

    Args:
        in_features: number of numeric columns ``F`` (0 when every column is categorical).
        num_classes: classes of a classification head (``[B, num_classes]`` logits).
        out_features: outputs of a regression head; give exactly one of ``num_classes``
            and ``out_features``.
        categories: cardinality of each categorical column, ``[n_0, n_1, ...]`` (codes of
            column ``i`` are ``0 .. n_i - 1``, an unknown bucket included).
        embedding_sizes: width of each column's embedding; default
            ``embedding_size(n_i) = min(600, round(1.6 * n_i ** 0.56))`` (fastai's rule).
        embedding: embedding spec for the categorical columns (default ``"token"``), built
            with ``dim=width, vocab_size=n_i``.
        hidden: widths of the hidden layers; default ``[256, 128]``.
        norm: norm spec after each hidden Linear (default ``"batch"``, built with
            ``dim=width``); ``"none"``/``None`` for no norm.
        activation: activation spec (default ``"relu"``), one module per layer.
        dropout: dropout after each hidden layer.
        embedding_dropout: dropout on the concatenated embeddings.
        head: head spec after the last hidden layer (slot ``head``; ``"linear"``). The
            dropouts are slots too (``layers.N.dropout``, ``embedding_dropout``).

    Call arguments:
        x_num: ``[B, F]`` float numeric features (may be None when ``F == 0``).
        x_cat: ``[B, C]`` integer codes, one column per entry of ``categories``.

    Returns:
        ``[B, num_classes]`` logits or ``[B, out_features]`` predictions.

    Raises:
        SpecError: bad sizes, both or neither of ``num_classes``/``out_features``, or a bad
            part in a slot (the registry names the slot and the kind it expects).
        ShapeError: (at call) inputs whose width, rank or dtype does not match the spec.

    Example:
        >>> import nnblocks, torch
        >>> model = nnblocks.build({"name": "mlp", "in_features": 5, "num_classes": 3,
        ...                         "categories": [4, 10], "hidden": [16]}, "model")
        >>> model(torch.randn(8, 5), torch.randint(0, 4, (8, 2))).shape
        torch.Size([8, 3])
    """

    def __init__(
        self,
        in_features: int,
        num_classes: int | None = None,
        out_features: int | None = None,
        categories: Sequence[int] | None = None,
        embedding_sizes: Sequence[int] | None = None,
        embedding: Any = "token",
        hidden: Sequence[int] | None = None,
        norm: Any = "batch",
        activation: Any = "relu",
        dropout: float = 0.0,
        embedding_dropout: float = 0.0,
        head: Any = "linear",
    ):
        super().__init__()
        path = current_path() or _NAME
        if isinstance(in_features, bool) or not isinstance(in_features, int) or in_features < 0:
            raise SpecError(
                f"Received an invalid value for `in_features` of model `{_NAME}`: expected an "
                f"integer >= 0. Received: in_features={in_features!r}",
                path=path,
            )
        if (num_classes is None) == (out_features is None):
            raise SpecError(
                f"model `{_NAME}` needs exactly one of `num_classes` (classification) and "
                f"`out_features` (regression). Received: num_classes={num_classes!r}, "
                f"out_features={out_features!r}",
                path=path,
            )
        outputs = num_classes if num_classes is not None else out_features
        outputs = _int_list([outputs], "num_classes/out_features", path, minimum=1)[0]
        cards = _int_list(categories or [], "categories", path, minimum=1)
        sizes = (
            [embedding_size(n) for n in cards]
            if embedding_sizes is None
            else _int_list(embedding_sizes, "embedding_sizes", path, minimum=1)
        )
        if len(sizes) != len(cards):
            raise SpecError(
                f"`embedding_sizes` needs one width per categorical column: {len(cards)} "
                f"`categories`. Received: {len(sizes)} embedding_sizes",
                path=path,
            )
        widths = _int_list(_DEFAULT_HIDDEN if hidden is None else hidden, "hidden", path, minimum=1)
        if in_features + sum(sizes) == 0:
            raise SpecError(
                f"model `{_NAME}` has no inputs: in_features=0 and no categories.", path=path
            )
        self.in_features, self.categories = in_features, cards

        self.embeddings = nn.ModuleList(
            build(embedding, "embedding", at=f"embeddings.{i}", dim=d, vocab_size=n)
            for i, (n, d) in enumerate(zip(cards, sizes))
        )
        self.embedding_dropout = build(
            {"name": "dropout", "p": embedding_dropout}, "regularization", at="embedding_dropout"
        )
        self.layers = nn.ModuleList()
        width = in_features + sum(sizes)
        for i, w in enumerate(widths):
            with spec_path(f"layers.{i}"):  # nested builds name `layers.0.norm` in errors
                self.layers.append(_Layer(width, w, norm, activation, dropout))
            width = w
        self.head = build(head, "head", at="head", dim=width, out_features=outputs, bias=True)

    def forward(self, x_num: Tensor | None, x_cat: Tensor | None = None) -> Tensor:
        """``x_num [B, F]``, ``x_cat [B, C]`` -> ``[B, outputs]``."""
        parts = self._check_inputs(x_num, x_cat)
        if self.embeddings:
            assert x_cat is not None  # checked above
            embedded = [
                emb(x_cat[:, i : i + 1]).flatten(1)  # [B, d_i]
                for i, emb in enumerate(self.embeddings)
            ]
            parts.append(self.embedding_dropout(torch.cat(embedded, dim=1)))
        x = parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)  # [B, F + sum(d_i)]
        for layer in self.layers:
            x = layer(x)
        return self.head(x)

    def _check_inputs(self, x_num: Any, x_cat: Any) -> list[Tensor]:
        F, C = self.in_features, len(self.categories)
        parts = []
        if F > 0 or x_num is not None:
            if (
                not isinstance(x_num, Tensor)
                or x_num.dim() != 2
                or x_num.shape[1] != F
                or not x_num.is_floating_point()
            ):
                raise ShapeError(
                    f"model `{_NAME}`: expected numeric features `x_num` as floats [B, {F}] "
                    f"(in_features={F}). Received: {received(x_num)}"
                )
            if F > 0:
                parts.append(x_num)
        if C > 0 or x_cat is not None:
            if (
                not isinstance(x_cat, Tensor)
                or x_cat.dim() != 2
                or x_cat.shape[1] != C
                or x_cat.is_floating_point()
                or x_cat.dtype == torch.bool
            ):
                raise ShapeError(
                    f"model `{_NAME}`: expected categorical codes `x_cat` as integers [B, {C}] "
                    f"(one column per entry of categories={self.categories}). "
                    f"Received: {received(x_cat)}"
                )
            if parts and x_cat.shape[0] != parts[0].shape[0]:
                raise ShapeError(
                    f"model `{_NAME}`: `x_num` and `x_cat` must have the same batch size. "
                    f"Received: x_num {tuple(parts[0].shape)}, x_cat {tuple(x_cat.shape)}"
                )
        return parts
