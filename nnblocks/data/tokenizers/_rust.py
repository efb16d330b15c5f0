"""The shared half of the tokenizers that run in the Rust `tokenizers` library (BPE,
pretrained): encoding, decoding and the ``tokenizer.json`` text they are stored as."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from nnblocks.data.tokenizers.base import Tokenizer
from nnblocks.errors import DataError

__all__ = ["RustTokenizer"]


class RustTokenizer(Tokenizer):
    """A tokenizer whose work is done by a ``tokenizers.Tokenizer`` (``self._tok``).

    Subclasses build ``self._tok`` (``fit``, or reading a file) and give ``options``.
    """

    def __init__(self) -> None:
        super().__init__()
        self._tok: Any = None

    @property
    def vocab_size(self) -> int:
        self._check_fitted()
        return int(self._tok.get_vocab_size())

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids, without the tokenizer's own post-processing; ``bos``/``eos`` add
        those tokens when the tokenizer has them."""
        self._check_fitted()
        ids = list(self._tok.encode(text, add_special_tokens=False).ids)
        if bos and self.bos_id is not None:
            ids.insert(0, self.bos_id)
        if eos and self.eos_id is not None:
            ids.append(self.eos_id)
        return ids

    def decode_tokens(self, ids: Sequence[int]) -> str:
        return str(self._tok.decode(list(ids), skip_special_tokens=True))

    def tokenizer_json(self) -> str:
        """The tokenizer as ``tokenizer.json`` text."""
        self._check_fitted()
        return str(self._tok.to_str())

    def _state(self) -> dict[str, Any]:
        return {"tokenizer_json": self._tok.to_str()}

    def _load_state(self, state: dict[str, Any]) -> None:
        from tokenizers import Tokenizer as RustPipeline

        try:
            self._tok = RustPipeline.from_str(state["tokenizer_json"])
        except Exception as exc:  # the Rust library raises its own exception type
            raise DataError(
                f"tokenizer `{self.name}`: the tokenizer JSON is unreadable: {exc}"
            ) from exc
        self.fitted = True
