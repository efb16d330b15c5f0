"""The tokenizer contract: text <-> token ids with four fixed specials.

Every tokenizer reserves the same ids for its specials, so models and losses can rely on
them without asking: ``pad_id = 0``, ``bos_id = 1``, ``eos_id = 2``, ``unk_id = 3``.
A tokenizer is fitted on the training split only (``fit(train_texts)``); text of other
splits with unseen symbols maps to ``<unk>``. ``to_dict()`` gives plain JSON data that
``tokenizer_from_dict`` turns back into an equal tokenizer, so a tokenizer is saved beside
the model it feeds.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import torch

from nnblocks.errors import DataError
from nnblocks.io.atomic import atomic_write_text

PAD, BOS, EOS, UNK = "<pad>", "<bos>", "<eos>", "<unk>"
SPECIALS = (PAD, BOS, EOS, UNK)
PAD_ID, BOS_ID, EOS_ID, UNK_ID = 0, 1, 2, 3
_FORMAT = 1  # version of the to_dict() layout


class Tokenizer:
    """Base of every tokenizer: specials, batch encoding with padding, decoding, JSON.

    Subclasses implement ``fit``, ``encode``, ``decode_tokens`` (ids -> text without
    specials) and ``_state``/``_load_state`` (what ``to_dict`` stores beyond the options).
    """

    name = "tokenizer"
    pad_id, bos_id, eos_id, unk_id = PAD_ID, BOS_ID, EOS_ID, UNK_ID
    specials = SPECIALS

    def __init__(self) -> None:
        self.fitted = False

    # -- to implement -------------------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> Tokenizer:
        raise NotImplementedError

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        raise NotImplementedError

    def decode_tokens(self, ids: Sequence[int]) -> str:
        raise NotImplementedError

    @property
    def vocab_size(self) -> int:
        raise NotImplementedError

    def options(self) -> dict[str, Any]:
        """The constructor arguments (plain data) that rebuild an unfitted twin."""
        return {}

    def _state(self) -> dict[str, Any]:
        return {}

    def _load_state(self, state: dict[str, Any]) -> None:
        pass

    def tokenizer_json(self) -> str | None:
        """The tokenizer in the `tokenizers` library's ``tokenizer.json`` format, or None
        when it has no such form (a saved model then keeps it in ``data.json`` only)."""
        return None

    def special_tokens(self) -> dict[str, str]:
        """``{"pad_token": ..., "bos_token": ..., "eos_token": ..., "unk_token": ...}``: the
        names ``tokenizer_config.json`` records beside ``tokenizer.json``."""
        return dict(zip(("pad_token", "bos_token", "eos_token", "unk_token"), SPECIALS))

    # -- shared ---------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not self.fitted:
            raise DataError(
                f"tokenizer `{self.name}` is not fitted: call fit(train_texts) on the training "
                "split first (fitting on all splits would leak test symbols into the vocabulary)."
            )

    def decode(self, ids: Sequence[int] | torch.Tensor, *, stop_at_eos: bool = True) -> str:
        """Token ids -> text. Specials are dropped; decoding stops at the first EOS.

        Args:
            ids: a sequence of ints or a 1-D tensor.
            stop_at_eos: cut at the first ``<eos>`` (what a generated sequence means).
        """
        if isinstance(ids, torch.Tensor):
            ids = ids.tolist()
        kept = []
        for i in ids:
            if i == self.eos_id and stop_at_eos:
                break
            if i not in (self.pad_id, self.bos_id, self.eos_id):
                kept.append(int(i))
        return self.decode_tokens(kept)

    def decode_batch(self, ids: torch.Tensor, *, stop_at_eos: bool = True) -> list[str]:
        """``[B, T]`` ids -> B texts."""
        return [self.decode(row, stop_at_eos=stop_at_eos) for row in ids.tolist()]

    def encode_batch(
        self,
        texts: Sequence[str],
        *,
        bos: bool = False,
        eos: bool = False,
        length: int | None = None,
    ) -> torch.Tensor:
        """Encode texts into one right-padded ``[N, T]`` long tensor (pad = ``pad_id``).

        Args:
            texts: the texts.
            bos, eos: add ``<bos>`` first / ``<eos>`` last.
            length: pad to this length (default: the longest row).

        Raises:
            DataError: a row is longer than ``length``.
        """
        from nnblocks.data.batching import pad_sequences

        rows = [self.encode(t, bos=bos, eos=eos) for t in texts]
        tokens, _ = pad_sequences(rows, pad_id=self.pad_id, length=length)
        return tokens

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON data: ``{"name", "format", "options", "state"}``."""
        self._check_fitted()
        return {
            "name": self.name,
            "format": _FORMAT,
            "options": self.options(),
            "state": self._state(),
        }

    def save(self, path: str | Path) -> Path:
        """Write ``to_dict()`` as JSON (atomically) and return the path."""
        path = Path(path)
        atomic_write_text(path, json.dumps(self.to_dict(), ensure_ascii=False))
        return path

    def __repr__(self) -> str:
        size = self.vocab_size if self.fitted else "unfitted"
        return f"{type(self).__name__}(vocab_size={size})"


class VocabTokenizer(Tokenizer):
    """A tokenizer that splits text into string tokens and looks them up in a vocabulary.

    Subclasses define ``tokenize(text) -> list[str]`` and ``join`` (the string that glues
    decoded tokens back together).
    """

    join = ""

    def __init__(self, min_freq: int = 1, max_vocab: int | None = None):
        super().__init__()
        if min_freq < 1:
            raise DataError(
                f"`min_freq` of tokenizer `{self.name}` must be >= 1. Received: {min_freq}"
            )
        if max_vocab is not None and max_vocab <= len(SPECIALS):
            raise DataError(
                f"`max_vocab` of tokenizer `{self.name}` must exceed the {len(SPECIALS)} specials. "
                f"Received: {max_vocab}"
            )
        self.min_freq = min_freq
        self.max_vocab = max_vocab
        self.vocab: list[str] = list(SPECIALS)
        self.index: dict[str, int] = {t: i for i, t in enumerate(SPECIALS)}

    def tokenize(self, text: str) -> list[str]:
        raise NotImplementedError

    def fit(self, texts: Iterable[str]) -> VocabTokenizer:
        """Build the vocabulary from the training texts: tokens seen at least ``min_freq``
        times, most frequent first (ties in first-seen order), at most ``max_vocab`` in all."""
        counts: collections.Counter[str] = collections.Counter()
        for text in texts:
            counts.update(self.tokenize(text))
        kept = [t for t, c in counts.most_common() if c >= self.min_freq and t not in self.index]
        if self.max_vocab is not None:
            kept = kept[: self.max_vocab - len(SPECIALS)]
        self._set_vocab(list(SPECIALS) + kept)
        return self

    def _set_vocab(self, vocab: list[str]) -> None:
        if list(vocab[: len(SPECIALS)]) != list(SPECIALS):
            raise DataError(
                f"tokenizer `{self.name}`: a vocabulary must start with the specials {list(SPECIALS)}. "
                f"Received: {vocab[: len(SPECIALS)]}"
            )
        self.vocab = list(vocab)
        self.index = {t: i for i, t in enumerate(self.vocab)}
        self.fitted = True

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str, *, bos: bool = False, eos: bool = False) -> list[int]:
        """Text -> ids; tokens outside the vocabulary become ``unk_id``."""
        self._check_fitted()
        get, unk = self.index.get, self.unk_id
        ids = [get(t, unk) for t in self.tokenize(text)]
        if bos:
            ids.insert(0, self.bos_id)
        if eos:
            ids.append(self.eos_id)
        return ids

    def decode_tokens(self, ids: Sequence[int]) -> str:
        vocab = self.vocab
        return self.join.join(vocab[i] if 0 <= i < len(vocab) else UNK for i in ids)

    def options(self) -> dict[str, Any]:
        return {"min_freq": self.min_freq, "max_vocab": self.max_vocab}

    def _state(self) -> dict[str, Any]:
        return {"vocab": list(self.vocab)}

    def _load_state(self, state: dict[str, Any]) -> None:
        self._set_vocab(list(state["vocab"]))


def tokenizer_from_dict(data: dict[str, Any]) -> Tokenizer:
    """Rebuild a fitted tokenizer from ``Tokenizer.to_dict()`` data.

    Raises:
        DataError: the data is not a tokenizer dict or names an unknown tokenizer.
    """
    from nnblocks.registry import build

    if not isinstance(data, dict) or not {"name", "options", "state"} <= set(data):
        raise DataError(
            "expected tokenizer data with keys `name`, `options`, `state` (from Tokenizer.to_dict()). "
            f"Received: {str(data)[:80]}"
        )
    if data.get("format", _FORMAT) > _FORMAT:
        raise DataError(
            f"tokenizer data has format {data['format']}, newer than this nnblocks reads ({_FORMAT})."
        )
    tok = build({"name": data["name"], **data["options"]}, "tokenizer")
    tok._load_state(data["state"])
    tok.fitted = True
    return tok


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer written by ``Tokenizer.save(path)``.

    Raises:
        DataError: the file is missing or is not tokenizer JSON.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read tokenizer file `{path}`: {exc}") from exc
    return tokenizer_from_dict(data)
