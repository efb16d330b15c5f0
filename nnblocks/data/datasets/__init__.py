"""Offline datasets (kind `dataset`): nothing is downloaded; each is generated or shipped
inside an installed package.

=================  ===========================================  ======================
name               what                                         task
=================  ===========================================  ======================
``digits``         8x8 handwritten digits (scikit-learn)        classification (images)
``wine``           wine cultivars, 13 measurements (sklearn)    classification (table)
``diabetes``       disease progression, 10 measurements         regression (table)
``numbers``        English -> German/French number words        seq2seq
``dates``          dates in 6 languages -> ISO dates            seq2seq
``python_source``  the standard library's .py files             char-level LM
=================  ===========================================  ======================

Your own files, by path (see ``files``): ``csv``, ``image_folder``, ``text_files``,
``texts``, ``pairs``, ``tensors``, ``token_corpus``, ``hf`` (local Hugging Face datasets).

Load one in a line: ``nnblocks.data.load("numbers", lang="de")``.
"""

from nnblocks.data.datasets.dates import dates
from nnblocks.data.datasets.files import (
    csv,
    hf,
    image_folder,
    pairs,
    tensors,
    text_files,
    texts,
    token_corpus,
)
from nnblocks.data.datasets.numbers import numbers
from nnblocks.data.datasets.python_source import python_source
from nnblocks.data.datasets.sklearn_sets import diabetes, digits, wine

__all__ = [
    "digits",
    "wine",
    "diabetes",
    "numbers",
    "dates",
    "python_source",
    "csv",
    "image_folder",
    "text_files",
    "texts",
    "pairs",
    "tensors",
    "token_corpus",
    "hf",
]
