"""Subword tokenizer: byte-pair encoding trained with the `tokenizers` library."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from nnblocks.data.tokenizers._rust import RustTokenizer
from nnblocks.data.tokenizers.base import SPECIALS, UNK
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["BPETokenizer"]


@register("tokenizer", "bpe")
class BPETokenizer(RustTokenizer):
    """Byte-pair encoding (Sennrich et al. 2016) trained on the training texts.

    Byte-level pre-tokenisation (as in GPT-2) means every string can be encoded and decoded
    back exactly, with no ``<unk>``. Training and encoding run in the Rust `tokenizers`
    library, imported only when this tokenizer is used.

    Args:
        vocab_size: the vocabulary size to reach, specials included.
        min_frequency: merges seen fewer times are not learned.

    Raises:
        DataError: ``vocab_size`` too small for the specials and the 256 byte symbols.

    Example:
        >>> tok = BPETokenizer(vocab_size=300).fit(["low lower lowest"] * 10)
        >>> tok.decode(tok.encode("lowest"))
        'lowest'
    """

    name = "bpe"

    def __init__(self, vocab_size: int = 1000, min_frequency: int = 2):
        super().__init__()
        if vocab_size < len(SPECIALS) + 256:
            raise DataError(
                "`vocab_size` of tokenizer `bpe` must be at least 260 (4 specials and the 256 "
                f"byte symbols). Received: vocab_size={vocab_size}"
            )
        self.target_vocab_size = vocab_size
        self.min_frequency = min_frequency

    def _new(self) -> Any:
        from tokenizers import Tokenizer as HFTokenizer
        from tokenizers import decoders, models, pre_tokenizers

        tok = HFTokenizer(models.BPE(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        return tok

    def fit(self, texts: Iterable[str]) -> BPETokenizer:
        """Learn merges from the training texts; the specials get ids 0-3."""
        from tokenizers import pre_tokenizers, trainers

        tok = self._new()
        trainer = trainers.BpeTrainer(
            vocab_size=self.target_vocab_size,
            min_frequency=self.min_frequency,
            special_tokens=list(SPECIALS),  # in this order: pad 0, bos 1, eos 2, unk 3
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tok.train_from_iterator(list(texts), trainer=trainer)
        self._tok = tok
        self.fitted = True
        return self

    def encode_batch(self, texts, *, bos=False, eos=False, length=None):  # type: ignore[no-untyped-def]
        """As ``Tokenizer.encode_batch``, encoding all texts in one call into Rust."""
        from nnblocks.data.batching import pad_sequences

        self._check_fitted()
        rows = [
            ([self.bos_id] if bos else []) + e.ids + ([self.eos_id] if eos else [])
            for e in self._tok.encode_batch(list(texts), add_special_tokens=False)
        ]
        tokens, _ = pad_sequences(rows, pad_id=self.pad_id, length=length)
        return tokens

    def tokenize(self, text: str) -> list[str]:
        """The subword strings of ``text`` (byte-level symbols, e.g. 'Ġworld')."""
        self._check_fitted()
        return list(self._tok.encode(text, add_special_tokens=False).tokens)

    def options(self) -> dict[str, Any]:
        return {"vocab_size": self.target_vocab_size, "min_frequency": self.min_frequency}
