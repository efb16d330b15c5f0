"""Tokenizers (kind `tokenizer`): character, word, lexicon (morphemes), BPE, and pretrained
ones read from a ``tokenizer.json`` file (which keep their own special ids).

All share the specials ``<pad>`` = 0, ``<bos>`` = 1, ``<eos>`` = 2, ``<unk>`` = 3, are
fitted on the training split only, and round-trip through ``to_dict()`` /
``tokenizer_from_dict()`` (plain JSON saved beside the model).
"""

from nnblocks.data.tokenizers.base import (
    BOS,
    BOS_ID,
    EOS,
    EOS_ID,
    PAD,
    PAD_ID,
    SPECIALS,
    UNK,
    UNK_ID,
    Tokenizer,
    VocabTokenizer,
    load_tokenizer,
    tokenizer_from_dict,
)
from nnblocks.data.tokenizers.bpe import BPETokenizer
from nnblocks.data.tokenizers.char import CharTokenizer
from nnblocks.data.tokenizers.lexicon import LexiconTokenizer
from nnblocks.data.tokenizers.pretrained import PretrainedTokenizer
from nnblocks.data.tokenizers.word import WordTokenizer

__all__ = [
    "PAD",
    "BOS",
    "EOS",
    "UNK",
    "SPECIALS",
    "PAD_ID",
    "BOS_ID",
    "EOS_ID",
    "UNK_ID",
    "Tokenizer",
    "VocabTokenizer",
    "CharTokenizer",
    "WordTokenizer",
    "LexiconTokenizer",
    "BPETokenizer",
    "PretrainedTokenizer",
    "tokenizer_from_dict",
    "load_tokenizer",
]
