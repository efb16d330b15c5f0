"""Morpheme lexicons of German and French number words (0 - 999,999).

German writes a number as one word ("zweihundertdreiundzwanzig"); split into its
morphemes (zwei|hundert|drei|und|zwanzig) the target vocabulary is 27 pieces that map
one-to-one onto English words and digits, which is what makes the task learnable by a
small model in seconds. The lexicon tokenizer matches greedily, longest piece first:
"sech" and "sieb" exist for sechzehn / siebzehn, and "sechzig" / "siebzig" are whole
pieces, so the longest match is always the right one (tested on every number
0 - 999,999 the tests sample).

French keeps words apart with spaces and hyphens ("quatre-vingt-dix-sept mille"); its
pieces are the words plus the separators " " and "-", so decoding is a plain join.
"""

from __future__ import annotations

__all__ = ["GERMAN", "FRENCH", "LEXICONS"]

GERMAN = [
    "null", "eins", "ein", "zwei", "drei", "vier", "fünf", "sechs", "sech", "sieben", "sieb",
    "acht", "neun", "zehn", "elf", "zwölf", "zwanzig", "dreißig", "vierzig", "fünfzig",
    "sechzig", "siebzig", "achtzig", "neunzig", "hundert", "tausend", "und",
]  # fmt: skip

FRENCH = [
    "zéro", "un", "deux", "trois", "quatre", "cinq", "six", "sept", "huit", "neuf", "dix",
    "onze", "douze", "treize", "quatorze", "quinze", "seize", "vingt", "vingts", "trente",
    "quarante", "cinquante", "soixante", "cent", "cents", "mille", "et", "-", " ",
]  # fmt: skip

LEXICONS = {"de": GERMAN, "fr": FRENCH}
