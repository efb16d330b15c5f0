"""Token corpora on disk: text tokenised once into raw token files, read memory-mapped.

A language-model corpus larger than memory is tokenised once, in a stream, into a folder::

    corpus/
      train.bin        token ids, little-endian uint16 (vocabularies up to 65,536) or uint32
      valid.bin        the same for the validation documents (absent if none)
      test.bin
      tokenizer.json   the tokenizer that wrote the ids (Tokenizer.to_dict())
      corpus.json      format, dtype, token counts per split, the tokenizer's SHA-256
      manifest.json    SHA-256 and size of every file above, written last

Every file goes through the one atomic write layer (``nnblocks.io.atomic.atomic_files``):
the folder holds the old corpus or the new one, never a half-written one. Reading maps the
files (``mmap``), so opening a 2 GB corpus costs no memory; the sizes are checked
against ``corpus.json`` and the tokenizer against its hash before any training starts.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import mmap
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from nnblocks.data.tokenizers.base import Tokenizer, tokenizer_from_dict
from nnblocks.errors import DataError, NNBlocksError
from nnblocks.io.atomic import Staging, atomic_files
from nnblocks.io.manifest import MANIFEST_NAME, dump_manifest, make_manifest, verify_manifest

__all__ = [
    "TokenCorpus",
    "TokenWriter",
    "write_token_corpus",
    "open_token_corpus",
    "tokenizer_hash",
]

CORPUS_FILE = "corpus.json"
TOKENIZER_FILE = "tokenizer.json"
_FORMAT = "nnblocks.tokens"
_VERSION = 1
_SPLITS = ("train", "valid", "test")


def tokenizer_hash(tokenizer: Tokenizer) -> str:
    """SHA-256 of a fitted tokenizer's canonical JSON: two tokenizers that give the same ids
    for every text have the same hash."""
    text = json.dumps(tokenizer.to_dict(), sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def _dtype_for(vocab_size: int) -> np.dtype:
    return np.dtype("<u2") if vocab_size <= 2**16 else np.dtype("<u4")


class TokenWriter:
    """Append token ids to a corpus folder's split files, then commit them all at once.

    Use through :func:`write_token_corpus`, or directly for ids made elsewhere::

        with atomic_files(folder) as staging:
            writer = TokenWriter(staging, tokenizer)
            writer.add("train", ids)          # any number of times, in any split
            writer.finish()                   # corpus.json, tokenizer.json, manifest.json

    Args:
        staging: the atomic staging of the corpus folder.
        tokenizer: the fitted tokenizer the ids come from.

    Raises:
        DataError: an id outside the tokenizer's vocabulary, or an unknown split.
    """

    def __init__(self, staging: Staging, tokenizer: Tokenizer):
        self.staging = staging
        self.tokenizer = tokenizer
        self.vocab_size = int(tokenizer.vocab_size)
        self.dtype = _dtype_for(self.vocab_size)
        self.counts = dict.fromkeys(_SPLITS, 0)
        self._files: dict[str, Any] = {}

    def add(self, split: str, ids: Any) -> None:
        """Append ``ids`` (a list or array of ints) to ``split``'s file."""
        if split not in self.counts:
            raise DataError(f"unknown corpus split `{split}`; expected one of {_SPLITS}.")
        array = np.asarray(ids)
        if array.size == 0:
            return
        if array.min() < 0 or array.max() >= self.vocab_size:
            raise DataError(
                f"token ids must be in 0..{self.vocab_size - 1} (the tokenizer's vocabulary). "
                f"Received ids {int(array.min())}..{int(array.max())}."
            )
        if split not in self._files:
            self._files[split] = open(self.staging.path(f"{split}.bin"), "wb")  # noqa: SIM115
        self._files[split].write(array.astype(self.dtype, copy=False).tobytes())
        self.counts[split] += int(array.size)

    def finish(self) -> dict[str, Any]:
        """Close the split files and write tokenizer.json, corpus.json and the manifest."""
        for f in self._files.values():
            f.close()
        if self.counts["train"] < 2:
            raise DataError("the corpus's training split has fewer than 2 tokens.")
        tok_text = json.dumps(self.tokenizer.to_dict(), ensure_ascii=False)
        self.staging.path(TOKENIZER_FILE).write_text(tok_text, encoding="utf-8")
        meta = {
            "format": _FORMAT,
            "version": _VERSION,
            "dtype": self.dtype.str,
            "vocab_size": self.vocab_size,
            "tokens": {k: v for k, v in self.counts.items() if v},
            "tokenizer_sha256": tokenizer_hash(self.tokenizer),
        }
        self.staging.path(CORPUS_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        names = [f"{k}.bin" for k in self._files] + [TOKENIZER_FILE, CORPUS_FILE]
        # hashes of the staged files, under the names they get on commit; asked for last,
        # the manifest is renamed last: a folder with a manifest is a complete corpus
        manifest = make_manifest({n: self.staging.path(n) for n in names})
        self.staging.path(MANIFEST_NAME).write_bytes(dump_manifest(manifest))
        return meta

    def close(self) -> None:
        for f in self._files.values():
            f.close()


def write_token_corpus(
    folder: str | os.PathLike[str],
    documents: Iterable[str],
    tokenizer: Tokenizer,
    *,
    valid: float = 0.01,
    test: float = 0.0,
    seed: int = 0,
) -> Path:
    """Tokenise ``documents`` once into a memory-mappable corpus folder (atomically).

    Each document goes whole to one split (by a seeded draw: ``valid`` and ``test`` are the
    shares of documents), followed by EOS, so no example straddles two splits. Documents are
    read one at a time: the corpus never has to fit in memory.

    Args:
        folder: the corpus folder (created; an old corpus there is replaced on success).
        documents: the texts, e.g. a generator reading files one by one.
        tokenizer: a fitted tokenizer (fit it on a sample first: ``tok.fit(texts[:1000])``).
        valid, test: shares of documents for the validation and test splits.
        seed: seed of the split draw.

    Returns:
        the folder.

    Raises:
        DataError: an unfitted tokenizer, bad shares, or no training text.

    Example:
        >>> tok = CharTokenizer().fit(texts[:100])  # doctest: +SKIP
        >>> write_token_corpus("corpus/", (p.read_text() for p in files), tok)  # doctest: +SKIP
    """
    if not tokenizer.fitted:
        raise DataError("write_token_corpus needs a fitted tokenizer (call tokenizer.fit first).")
    if not (0 <= valid < 1 and 0 <= test < 1 and valid + test < 1):
        raise DataError(f"`valid` + `test` must be below 1. Received: valid={valid}, test={test}")
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    with atomic_files(out) as staging:
        writer = TokenWriter(staging, tokenizer)
        try:
            for doc in documents:
                draw = rng.random()
                split = "test" if draw < test else "valid" if draw < test + valid else "train"
                writer.add(split, tokenizer.encode(doc, eos=True))
            writer.finish()
        finally:
            writer.close()
    return out


@dataclasses.dataclass
class TokenCorpus:
    """An opened corpus folder: memory-mapped token arrays per split and the tokenizer."""

    folder: Path
    tokenizer: Tokenizer
    splits: dict[str, np.ndarray]  # views of memory maps of the split files
    meta: dict[str, Any]

    def __iter__(self) -> Iterator[str]:
        return iter(self.splits)


def open_token_corpus(
    folder: str | os.PathLike[str], *, tokenizer: Tokenizer | None = None, verify: bool = False
) -> TokenCorpus:
    """Open a corpus folder written by :func:`write_token_corpus` (memory-mapped, no copy).

    Args:
        folder: the corpus folder.
        tokenizer: the tokenizer the caller means to use; it must be the one that wrote the
            corpus (same hash), else the ids would mean other tokens.
        verify: check the SHA-256 of every file against the manifest (reads the whole
            corpus once); without it, sizes are checked.

    Raises:
        DataError: a missing folder or file, a folder that is not a corpus, a file whose
            size does not match its token count (truncated), or a corpus written by another
            tokenizer (naming the file and both hashes).
    """
    root = Path(folder)
    meta_path = root / CORPUS_FILE
    if not meta_path.is_file():
        raise DataError(
            f"`{root}` is not a token corpus: `{CORPUS_FILE}` is missing "
            "(write one with nnblocks.data.write_token_corpus)."
        )
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
        stored = tokenizer_from_dict(
            json.loads((root / TOKENIZER_FILE).read_text(encoding="utf-8"))
        )
    except (OSError, ValueError) as exc:
        raise DataError(f"cannot read the token corpus `{root}`: {exc}") from exc
    if meta.get("format") != _FORMAT or int(meta.get("version", 0)) > _VERSION:
        raise DataError(f"`{meta_path}`: not a token corpus of a version this nnblocks reads.")
    if verify:
        try:
            verify_manifest(root)
        except NNBlocksError as exc:
            raise DataError(f"token corpus `{root}` failed its manifest check: {exc}") from exc
    stored_hash = tokenizer_hash(stored)
    if stored_hash != meta.get("tokenizer_sha256"):
        raise DataError(f"`{root / TOKENIZER_FILE}` does not match the hash in `{meta_path}`.")
    if tokenizer is not None and tokenizer_hash(tokenizer) != stored_hash:
        raise DataError(
            f"token corpus `{root}` was written by another tokenizer ({stored!r}, sha256 "
            f"{stored_hash[:12]}); the given one ({tokenizer!r}) has sha256 "
            f"{tokenizer_hash(tokenizer)[:12]}. Re-tokenise the corpus, or use its tokenizer."
        )
    dtype = np.dtype(meta["dtype"])
    splits = {}
    for name, count in meta["tokens"].items():
        path = root / f"{name}.bin"
        size = path.stat().st_size if path.is_file() else -1
        if size != count * dtype.itemsize:
            raise DataError(
                f"`{path}`: expected {count} tokens ({count * dtype.itemsize} bytes) as "
                f"`{CORPUS_FILE}` says; the file has {size} bytes (truncated or replaced)."
            )
        splits[name] = _map(path, dtype, count)
    return TokenCorpus(folder=root, tokenizer=tokenizer or stored, splits=splits, meta=meta)


def _map(path: Path, dtype: np.dtype, count: int) -> np.ndarray:
    """``[count]`` tokens of ``path`` as an array over a memory map of the file.

    Copy-on-write (``ACCESS_COPY``): a writable view, as torch wants one, that can never
    change the file. ``MADV_RANDOM``: blocks are sampled at random, so the kernel's usual
    read-around (about 128 KB for every page touched) would page in the whole file for
    nothing — with it off, only the pages of the sampled blocks are read.
    """
    with open(path, "rb") as f:
        mapping = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
    if hasattr(mapping, "madvise") and hasattr(mmap, "MADV_RANDOM"):  # Linux, macOS
        mapping.madvise(mmap.MADV_RANDOM)
    return np.frombuffer(mapping, dtype=dtype, count=count)
