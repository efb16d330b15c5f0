"""Numbers: English number words -> German or French number words (offline, generated).

``numbers(lang="de")``: "three hundred and twenty-two" -> "dreihundertzweiundzwanzig",
generated with num2words. Test numbers are never seen in training, and a ``long`` split
holds numbers whose English form is longer (in words) than any training example, to
measure length generalisation.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from nnblocks.data._cache import cache_dir, cache_key, read_json, write_json
from nnblocks.data.bundle import DataBundle
from nnblocks.data.datasets._morphemes import LEXICONS
from nnblocks.data.sources.parallel import from_pairs
from nnblocks.data.splits import split_by_indices
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["numbers", "english_words"]

log = logging.getLogger(__name__)
_WORDS = re.compile(r"[a-z]+")
_GENERATOR_VERSION = 1  # bump when the generated pairs change, so old caches are not reused


def english_words(text: str) -> list[str]:
    """The words of an English number ("twenty-two thousand, one" -> 4 words)."""
    return _WORDS.findall(text)


def _generate(
    lang: str, sizes: dict[str, int], max_number: int, long_min_words: int | None, seed: int
) -> dict[str, list[list[Any]]]:
    """``{split: [[n, english, target], ...]}``: distinct numbers, drawn in a seeded order."""
    import numpy as np
    from num2words import num2words

    need_short = sizes["train"] + sizes["valid"] + sizes["test"]
    need_long = sizes["long"] if long_min_words is not None else 0
    short: list[tuple[int, str]] = []
    long: list[tuple[int, str]] = []
    for n in np.random.default_rng(seed).permutation(max_number + 1).tolist():
        en = num2words(n, lang="en")
        is_long = long_min_words is not None and len(english_words(en)) >= long_min_words
        if is_long and len(long) < need_long:
            long.append((n, en))
        elif not is_long and len(short) < need_short:
            short.append((n, en))
        if len(short) == need_short and len(long) == need_long:
            break
    if len(short) < need_short or len(long) < need_long:
        raise DataError(
            f"dataset `numbers`: numbers 0-{max_number} hold only {len(short)} short and {len(long)} long "
            f"numbers; asked for {need_short} and {need_long}. Lower the sizes or raise max_number."
        )
    a, b = sizes["test"], sizes["test"] + sizes["valid"]
    chosen = {"test": short[:a], "valid": short[a:b], "train": short[b:], "long": long}
    return {
        name: [[n, en, num2words(n, lang=lang)] for n, en in items]
        for name, items in chosen.items()
    }


def _check_options(lang: str, target_tokens: str, max_number: int, sizes: dict[str, int]) -> None:
    if lang not in LEXICONS:
        raise DataError(
            f"dataset `numbers`: `lang` must be one of {sorted(LEXICONS)}. Received: lang={lang!r}"
        )
    if target_tokens not in ("morphemes", "chars"):
        raise DataError(
            f"dataset `numbers`: `target_tokens` must be 'morphemes' or 'chars'. Received: {target_tokens!r}"
        )
    if not 0 < max_number <= 999_999:
        raise DataError(
            f"dataset `numbers`: `max_number` must be in 1..999999. Received: {max_number}"
        )
    if sizes["train"] < 1 or any(v < 0 for v in sizes.values()):
        raise DataError(
            f"dataset `numbers`: sizes must be >= 0 and train_size >= 1. Received: {sizes}"
        )


def _cached_pairs(
    lang: str,
    sizes: dict[str, int],
    max_number: int,
    long_min_words: int | None,
    seed: int,
    *,
    cache: bool,
) -> dict[str, list[list[Any]]]:
    """The generated pairs, read from the cache when an earlier call made them."""
    key = cache_key(
        v=_GENERATOR_VERSION,
        lang=lang,
        sizes=sizes,
        max_number=max_number,
        long_min_words=long_min_words,
        seed=seed,
    )
    path = cache_dir() / f"numbers-{lang}-{key}.json" if cache else None
    data = read_json(path) if path is not None else None
    if data is None:
        kept = "; cached for the next run" if path is not None else " (caching is off)"
        log.info("generating number pairs (en -> %s)%s", lang, kept)
        data = _generate(lang, sizes, max_number, long_min_words, seed)
        if path is not None:
            write_json(path, data)
    return data


@register("dataset", "numbers")
def numbers(
    lang: str = "de",
    target_tokens: str = "morphemes",
    train_size: int = 60_000,
    valid_size: int = 2_000,
    test_size: int = 10_000,
    long_size: int = 2_000,
    max_number: int = 999_999,
    long_min_words: int | None = 11,
    seed: int = 0,
    cache: bool = True,
    label_smoothing: float = 0.0,
) -> DataBundle:
    """English number words -> German (``lang="de"``) or French (``"fr"``) number words.

    Numbers are drawn without replacement from 0..``max_number`` in a seeded order, so
    the train, valid, test and long splits never share a number (and so never share a
    source sentence; the bundle checks this). Source tokens are English words (hyphens
    and commas dropped); target tokens are morphemes (``"zwei|und|zwanzig"``; for French
    the words and the " " / "-" between them) or characters.

    Generated pairs are cached as JSON in ``$NNBLOCKS_CACHE`` (default
    ``~/.cache/nnblocks``): the first call with given options takes ~15 s (num2words
    costs ~0.15 ms a pair), later ones well under a second.

    Args:
        lang: ``"de"`` or ``"fr"``.
        target_tokens: ``"morphemes"`` or ``"chars"``.
        train_size, valid_size, test_size: numbers in each split.
        long_size: numbers in the ``long`` split (``bundle.extra["long"]``).
        max_number: the largest number (at most 999,999: larger ones add new words).
        long_min_words: numbers whose English form has at least this many words go only to
            the ``long`` split (11 words is the longest there is below a million, e.g.
            "seven hundred and seventy-seven thousand, seven hundred and seventy-seven";
            about 30% of 6-digit numbers); None: no long split, all lengths in training.
        seed: seed of the draw.
        cache: read and write the cache file.
        label_smoothing: of the cross-entropy loss.

    Returns:
        a seq2seq DataBundle, ``(src, tgt_in, tgt_out)`` with ``n_inputs=2``; extra split
        ``long``; ``task.evaluate(model, "test")`` gives greedy exact match.

    Raises:
        DataError: an unknown ``lang`` or ``target_tokens``, sizes the number range cannot
            fill, or ``max_number`` above 999,999.

    Example:
        >>> bundle = nnblocks.data.load("numbers", lang="de")  # doctest: +SKIP
        >>> bundle.task.decode_example(bundle.test[0])  # doctest: +SKIP
        {'input': 'four hundred and nine thousand ...', 'target': 'vierhundertneuntausend...'}
    """
    sizes = {"train": train_size, "valid": valid_size, "test": test_size, "long": long_size}
    _check_options(lang, target_tokens, max_number, sizes)
    data = _cached_pairs(lang, sizes, max_number, long_min_words, seed, cache=cache)
    pairs = [(en, tgt) for name in ("train", "valid", "test") for _, en, tgt in data[name]]
    a, b = len(data["train"]), len(data["train"]) + len(data["valid"])
    splits = split_by_indices(
        len(pairs), train=range(a), valid=range(a, b), test=range(b, len(pairs))
    )
    extra = {"long": [(en, tgt) for _, en, tgt in data["long"]]} if data["long"] else None
    tgt_tok: Any = (
        {"name": "lexicon", "lexicon": LEXICONS[lang]} if target_tokens == "morphemes" else "char"
    )
    return from_pairs(
        pairs,
        src_tokenizer={"name": "word", "pattern": "[a-z]+"},
        tgt_tokenizer=tgt_tok,
        split=splits,
        extra=extra,
        label_smoothing=label_smoothing,
        where="dataset `numbers`",
        info={
            "lang": lang,
            "target_tokens": target_tokens,
            "long_min_words": long_min_words,
            "seed": seed,
        },
    )
