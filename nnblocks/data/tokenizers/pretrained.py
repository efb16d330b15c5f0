"""A ready tokenizer from a ``tokenizer.json`` file (the `tokenizers` library's format).

Hugging Face model folders ship their tokenizer as ``tokenizer.json`` (the whole pipeline:
normaliser, pre-tokeniser, model, decoder) and name its special tokens in
``tokenizer_config.json``. Both are plain JSON read by the Rust `tokenizers` library: no
code from the folder runs.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from nnblocks.data.tokenizers._rust import RustTokenizer
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["PretrainedTokenizer", "TOKENIZER_FILE", "TOKENIZER_CONFIG_FILE"]

TOKENIZER_FILE = "tokenizer.json"
TOKENIZER_CONFIG_FILE = "tokenizer_config.json"
_MAX_BYTES = 512 * 2**20  # the largest published tokenizer.json files are ~20 MB
_ROLES = ("pad", "bos", "eos", "unk")
# Names used when tokenizer_config.json is absent, most common first.
_GUESSES = {
    "pad": ("<pad>", "[PAD]", "<|pad|>"),
    "bos": ("<bos>", "<s>", "<|begin_of_text|>", "[CLS]"),
    "eos": ("<eos>", "</s>", "<|endoftext|>", "<|end_of_text|>", "[SEP]"),
    "unk": ("<unk>", "[UNK]"),
}


def _read(path: Path, what: str) -> str:
    try:
        size = path.stat().st_size
        if size > _MAX_BYTES:
            raise DataError(f"`{path}` ({what}) is {size} bytes: expected at most {_MAX_BYTES}.")
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(f"cannot read `{path}` ({what}): {exc}") from exc


def _token_name(value: Any) -> str | None:
    # transformers writes special tokens as strings or as {"content": "<s>", ...} records.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


@register("tokenizer", "pretrained")
class PretrainedTokenizer(RustTokenizer):
    """A fitted subword tokenizer read from ``tokenizer.json``; it keeps its own ids.

    Unlike the tokenizers nnblocks fits (specials at ids 0-3), a pretrained tokenizer's
    special tokens sit wherever its vocabulary put them; ``pad_id``, ``bos_id``, ``eos_id``
    and ``unk_id`` are looked up from the token names (None when it has no such token).

    Args:
        pad_token, bos_token, eos_token, unk_token: the special tokens' names.

    Example:
        >>> tok = PretrainedTokenizer.from_folder("path/to/hf_model")   # doctest: +SKIP
        >>> tok.decode(tok.encode("hello world"))                        # doctest: +SKIP
        'hello world'
    """

    name = "pretrained"

    def __init__(
        self,
        pad_token: str | None = None,
        bos_token: str | None = None,
        eos_token: str | None = None,
        unk_token: str | None = None,
    ):
        super().__init__()
        self.tokens = {"pad": pad_token, "bos": bos_token, "eos": eos_token, "unk": unk_token}

    # -- reading ----------------------------------------------------------------------
    @classmethod
    def from_json(cls, text: str, *, special: dict[str, Any] | None = None) -> PretrainedTokenizer:
        """A tokenizer from the text of ``tokenizer.json`` and optional special names
        (``{"bos_token": "<s>", ...}``, the keys of ``tokenizer_config.json``).

        Raises:
            DataError: the `tokenizers` library cannot read the text.
        """
        special = special or {}
        names = {role: _token_name(special.get(f"{role}_token")) for role in _ROLES}
        tok = cls(**{f"{role}_token": name for role, name in names.items()})
        tok._load_state({"tokenizer_json": text})
        for role in _ROLES:  # guess only what the config does not name
            if tok.tokens[role] is None:
                tok.tokens[role] = next(
                    (g for g in _GUESSES[role] if tok._tok.token_to_id(g) is not None), None
                )
        tok._set_ids()
        return tok

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str]) -> PretrainedTokenizer:
        """Read ``folder/tokenizer.json`` and, when present, ``folder/tokenizer_config.json``.

        Raises:
            DataError: a missing or unreadable file (naming it).
        """
        folder = Path(folder)
        path = folder / TOKENIZER_FILE
        if not path.is_file():
            raise DataError(
                f"`{path}` is missing: expected a tokenizer in the `tokenizers` format."
            )
        special: dict[str, Any] = {}
        config = folder / TOKENIZER_CONFIG_FILE
        if config.is_file():
            try:
                loaded = json.loads(_read(config, "the tokenizer's special tokens"))
            except ValueError as exc:
                raise DataError(f"`{config}` is not valid JSON: {exc}") from exc
            special = loaded if isinstance(loaded, dict) else {}
        try:
            return cls.from_json(_read(path, "a tokenizer"), special=special)
        except DataError as exc:
            raise DataError(f"`{path}`: {exc}") from exc

    def _set_ids(self) -> None:
        for role in _ROLES:
            name = self.tokens[role]
            setattr(self, f"{role}_id", None if name is None else self._tok.token_to_id(name))
        self.specials = tuple(n for n in self.tokens.values() if n is not None)  # type: ignore[assignment]

    # -- the tokenizer contract -------------------------------------------------------
    def fit(self, texts: Iterable[str]) -> PretrainedTokenizer:
        """Pretrained: fitting again would change every id the model learned. Refused."""
        raise DataError(
            "tokenizer `pretrained` is already trained (it was read from tokenizer.json); "
            "its ids belong to the model. Use a `bpe` tokenizer to fit a new vocabulary."
        )

    def options(self) -> dict[str, Any]:
        return {f"{role}_token": name for role, name in self.tokens.items()}

    def _load_state(self, state: dict[str, Any]) -> None:
        super()._load_state(state)
        self._set_ids()

    def special_tokens(self) -> dict[str, str]:
        return {f"{role}_token": n for role, n in self.tokens.items() if n is not None}
