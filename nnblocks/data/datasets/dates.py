"""Dates: human-readable dates in several languages -> ISO 8601 (offline, generated)."""

from __future__ import annotations

import datetime
import logging
import re
from collections.abc import Sequence

from nnblocks.data.bundle import DataBundle
from nnblocks.data.sources.parallel import from_pairs
from nnblocks.data.splits import split_by_indices
from nnblocks.errors import DataError
from nnblocks.registry import register

__all__ = ["dates", "date_formats"]

log = logging.getLogger(__name__)

LOCALES = ("en_US", "en_GB", "de_DE", "fr_FR", "es_ES", "it_IT", "nl_NL", "pt_BR")
FORMATS = ("short", "medium", "long", "full")
_TWO_DIGIT_YEAR = re.compile(r"(?<!y)yy(?!y)")


def date_formats(locales: Sequence[str], formats: Sequence[str]) -> list[tuple[str, str]]:
    """The ``(locale, format)`` pairs whose pattern writes the full year.

    Two-digit years ("3/14/21") are left out: the century cannot be read from them, so
    the target would not be a function of the source.

    Raises:
        DataError: an unknown locale or format name (naming it).
    """
    from babel import Locale, UnknownLocaleError

    out = []
    for loc in locales:
        try:
            patterns = Locale.parse(loc).date_formats
        except (UnknownLocaleError, ValueError) as exc:
            raise DataError(f"dataset `dates`: unknown locale {loc!r} ({exc}).") from exc
        for fmt in formats:
            if fmt not in FORMATS:
                raise DataError(
                    f"dataset `dates`: unknown format {fmt!r}. Known formats: {', '.join(FORMATS)}"
                )
            if not _TWO_DIGIT_YEAR.search(patterns[fmt].pattern):
                out.append((loc, fmt))
    if not out:
        raise DataError(
            f"dataset `dates`: no format of {list(locales)} x {list(formats)} writes a full year."
        )
    return out


@register("dataset", "dates")
def dates(
    locales: Sequence[str] = LOCALES,
    formats: Sequence[str] = FORMATS,
    start: str = "1950-01-01",
    end: str = "2049-12-31",
    train_size: int = 20_000,
    valid_size: int = 1_000,
    test_size: int = 2_000,
    seed: int = 0,
    label_smoothing: float = 0.0,
) -> DataBundle:
    """Dates as people write them -> ISO dates: "Sonntag, 14. März 2021" -> "2021-03-14".

    Each example is a distinct calendar day between ``start`` and ``end``, written in a
    randomly chosen locale and format by babel (CLDR locale data, no download). Days are
    drawn without replacement, so no test date — in any spelling — occurs in training.
    Source and target are character sequences; the source vocabulary is fitted on the
    training split (a rare accented letter seen only in test becomes ``<unk>``).

    Args:
        locales: babel locale names (default: 8 locales, 6 languages).
        formats: CLDR date formats among "short", "medium", "long", "full"; patterns with
            two-digit years are skipped (see ``date_formats``).
        start, end: the date range, ISO strings (inclusive).
        train_size, valid_size, test_size: days in each split.
        seed: seed of the draw.
        label_smoothing: of the cross-entropy loss.

    Returns:
        a seq2seq DataBundle, ``(src, tgt_in, tgt_out)`` with ``n_inputs=2``.

    Raises:
        DataError: bad dates, an unknown locale/format, or more days asked than the range has.

    Example:
        >>> bundle = nnblocks.data.load("dates", locales=["de_DE"], train_size=500)  # doctest: +SKIP
    """
    import numpy as np
    from babel.dates import format_date

    try:
        first, last = datetime.date.fromisoformat(start), datetime.date.fromisoformat(end)
    except ValueError as exc:
        raise DataError(f"dataset `dates`: `start`/`end` must be ISO dates. {exc}") from exc
    days = (last - first).days + 1
    total = train_size + valid_size + test_size
    if days < total or train_size < 1:
        raise DataError(
            f"dataset `dates`: {start}..{end} has {max(days, 0)} days; asked for {total} distinct days "
            "(train_size >= 1). Widen the range or lower the sizes."
        )
    styles = date_formats(locales, formats)
    rng = np.random.default_rng(seed)
    offsets = rng.choice(days, size=total, replace=False).tolist()
    style_of = rng.integers(len(styles), size=total).tolist()
    pairs = []
    for off, s in zip(offsets, style_of):
        day = first + datetime.timedelta(days=off)
        loc, fmt = styles[s]
        pairs.append((format_date(day, format=fmt, locale=loc), day.isoformat()))
    a, b = test_size, test_size + valid_size
    # test first, then valid, then train: the same seed gives the same test days for any train_size
    splits = split_by_indices(total, test=range(a), valid=range(a, b), train=range(b, total))
    return from_pairs(
        pairs,
        src_tokenizer="char",
        tgt_tokenizer="char",
        split=splits,
        label_smoothing=label_smoothing,
        where="dataset `dates`",
        info={"locales": list(locales), "formats": [f"{loc}:{fmt}" for loc, fmt in styles]},
    )
