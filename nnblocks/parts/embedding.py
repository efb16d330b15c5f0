"""Contract and built-in parts of kind `embedding`.

Contract:

- Construction: ``Part(dim, vocab_size, padding_idx=None, **options)``; every option has a
  default.
- Call: ``part(ids) -> vectors``: ``ids`` ``[B, T]`` integer token ids (int64 or int32;
  narrower integer types are widened; any shape works) -> ``[B, T, D]`` in the part's parameter dtype and on its device.
- ``.weight`` ``[vocab_size, D]`` is the table, exposed for weight tying (Press & Wolf
  2017): a model may set ``head.weight = embedding.weight``.
- With ``padding_idx`` the padding row starts at zero and receives no gradient.
- Optional capability, detected from the call signature: ``part(ids, token_type_ids=...)``
  with ``token_type_ids`` ``[B, T]`` integer segment ids (BERT's sentence A/B); a model
  passes it only when the caller gave one.
- No state between calls.
- Float ids raise ``ShapeError``; ids outside ``[0, vocab_size)`` raise ``DataError``, both
  naming the part, its slot and what was received, instead of an opaque index error (or a
  device-side assert on GPU).

Built-ins: ``token`` (a learned lookup table, optionally scaled by ``sqrt(dim)`` as in
Vaswani et al. 2017).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from nnblocks.errors import DataError, ShapeError, SpecError
from nnblocks.registry import register
from nnblocks.spec import current_path

__all__ = ["TokenEmbedding"]

_ID_DTYPES = (torch.int64, torch.int32)  # what F.embedding accepts


@register("embedding", "token")
class TokenEmbedding(nn.Module):
    """A learned table of token vectors, looked up with ``F.embedding``.

    The table is initialised from ``N(0, 1/dim)``, so each vector has a norm near 1: the
    scale that suits a tied output projection and, multiplied by ``sqrt(dim)`` with
    ``scale=True``, unit-variance features as in the original transformer.

    Args:
        dim: vector width D.
        vocab_size: number of token ids V.
        padding_idx: the id of the padding token (its vector starts at zero and is never
            updated), or None. Negative values count from the end, as in Python.
        scale: multiply the vectors by ``sqrt(dim)`` (Vaswani et al. 2017, section 3.4).
        check_ids: validate that ids are in ``[0, vocab_size)``. Free on CPU (torch's index
            error is translated); on an accelerator it costs one reduction and one host sync
            per call, so pass False where that matters (CUDA graphs). Skipped while
            ``torch.compile`` traces.
        type_vocab_size: number of token types (segments) with a learned vector added to
            each token's (BERT, Devlin et al. 2019); 0 for none. Ids of type 0 are assumed
            when the call gives no ``token_type_ids``, as in BERT.

    Parameters: ``weight`` ``[V, D]``; with token types also ``type_weight``
    ``[type_vocab_size, D]``.

    Call arguments:
        ids: ``[B, T]`` integer token ids (any shape); int64 and int32 are used as they
            are, narrower integer types are widened to int64.

    Returns:
        ``[B, T, D]`` vectors in the dtype of ``.weight``.

    Raises:
        SpecError: ``dim`` or ``vocab_size`` is not a positive integer, or ``padding_idx``
            is outside the vocabulary.
        ShapeError: ``ids`` is a float, complex or bool tensor.
        DataError: an id is outside ``[0, vocab_size)``.

    Example:
        >>> import torch, nnblocks
        >>> emb = nnblocks.build("token", "embedding", dim=16, vocab_size=100)
        >>> emb(torch.tensor([[1, 2, 3]])).shape
        torch.Size([1, 3, 16])
    """

    def __init__(
        self,
        dim: int,
        vocab_size: int,
        padding_idx: int | None = None,
        scale: bool = False,
        check_ids: bool = True,
        type_vocab_size: int = 0,
    ):
        super().__init__()
        path = current_path() or None
        sizes = (
            ("dim", dim, 1),
            ("vocab_size", vocab_size, 1),
            ("type_vocab_size", type_vocab_size, 0),
        )
        for name, value, low in sizes:
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                what = "a positive integer" if low else "a non-negative integer"
                raise SpecError(
                    f"Received an invalid value for `{name}` of embedding part `token`: "
                    f"expected {what}. Received: {name}={value!r}",
                    path=path,
                )
        if padding_idx is not None:
            if (
                isinstance(padding_idx, bool)
                or not isinstance(padding_idx, int)
                or not -vocab_size <= padding_idx < vocab_size
            ):
                raise SpecError(
                    "Received an invalid value for `padding_idx` of embedding part `token`: "
                    f"expected None or an id in [0, vocab_size={vocab_size}). "
                    f"Received: padding_idx={padding_idx!r}",
                    path=path,
                )
            padding_idx %= vocab_size
        self.dim = dim
        self.vocab_size = vocab_size
        self.padding_idx = padding_idx
        self.scale = bool(scale)
        self.check_ids = bool(check_ids)
        self._multiplier = math.sqrt(dim)
        self._path = current_path()  # the slot, for error messages at call time
        self.weight = nn.Parameter(torch.empty(vocab_size, dim))  # [V, D]
        self.type_vocab_size = type_vocab_size
        self.type_weight = (
            nn.Parameter(torch.empty(type_vocab_size, dim)) if type_vocab_size else None
        )  # [types, D]
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Draw the table from ``N(0, 1/dim)`` and zero the padding row."""
        nn.init.normal_(self.weight, std=self.dim**-0.5)
        if self.type_weight is not None:
            nn.init.normal_(self.type_weight, std=self.dim**-0.5)
        if self.padding_idx is not None:
            with torch.no_grad():
                self.weight[self.padding_idx].zero_()

    def forward(
        self, ids: torch.Tensor, token_type_ids: torch.Tensor | None = None
    ) -> torch.Tensor:
        if ids.dtype not in _ID_DTYPES:
            if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
                raise ShapeError(
                    f"embedding part `token`{self._where()}: expected integer token ids "
                    f"(int64 or int32). Received: dtype {ids.dtype}, shape {tuple(ids.shape)}"
                )
            ids = ids.long()  # narrow integer ids (uint8, int16): F.embedding takes int32/64
        if self.check_ids and not ids.is_cpu and not torch.compiler.is_compiling():
            self._check_range(ids)
        try:
            out = F.embedding(ids, self.weight, self.padding_idx)  # [B, T, D]
        except IndexError:  # CPU: an id out of range; say which and where
            self._check_range(ids)
            raise  # pragma: no cover  (_check_range raises for every out-of-range id)
        if self.scale:
            out = out * self._multiplier
        if self.type_weight is not None:
            out = out + self._types(ids, token_type_ids)
        elif token_type_ids is not None:
            raise ShapeError(
                f"embedding part `token`{self._where()} has no token types "
                "(type_vocab_size=0), so it takes no `token_type_ids`. Received: a tensor of "
                f"shape {tuple(token_type_ids.shape)}; build it with a `type_vocab_size`."
            )
        return out

    def _types(self, ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        """The token-type vectors ``[B, T, D]`` (type 0 everywhere when none are given)."""
        assert self.type_weight is not None
        if token_type_ids is None:
            return self.type_weight[0]  # [D], broadcast over every token
        if token_type_ids.shape != ids.shape or token_type_ids.dtype not in _ID_DTYPES:
            raise ShapeError(
                f"embedding part `token`{self._where()}: expected `token_type_ids` as integer "
                f"ids of the shape of the tokens {tuple(ids.shape)}. Received: dtype "
                f"{token_type_ids.dtype}, shape {tuple(token_type_ids.shape)}"
            )
        if not torch.compiler.is_compiling() and token_type_ids.numel():
            low, high = torch.aminmax(token_type_ids)
            if bool((low < 0) | (high >= self.type_vocab_size)):
                raise DataError(
                    f"embedding part `token`{self._where()}: expected token types in "
                    f"[0, type_vocab_size={self.type_vocab_size}). Received: from {int(low)} "
                    f"to {int(high)}"
                )
        return F.embedding(token_type_ids, self.type_weight)  # [B, T, D]

    def _check_range(self, ids: torch.Tensor) -> None:
        if ids.numel() == 0:
            return
        low, high = torch.aminmax(ids)
        if bool((low < 0) | (high >= self.vocab_size)):  # one host sync
            raise DataError(
                f"embedding part `token`{self._where()}: expected token ids in "
                f"[0, vocab_size={self.vocab_size}). Received: ids from {int(low)} to "
                f"{int(high)}. Check the tokenizer's vocabulary against the model's "
                "vocab_size."
            )

    def _where(self) -> str:
        return f" at `{self._path}`" if self._path else ""

    def extra_repr(self) -> str:
        extra = f", padding_idx={self.padding_idx}" if self.padding_idx is not None else ""
        return f"{self.vocab_size}, {self.dim}{extra}, scale={self.scale}"
