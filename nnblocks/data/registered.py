"""Registers the built-in datasets, transforms and tokenizers (kinds `dataset`,
`transform`, `tokenizer`) without importing their heavy dependencies until a part is built.

Importing a module below registers its parts; every module keeps pandas, scikit-learn,
tokenizers, num2words, babel and PIL inside the functions that need them.
"""

from nnblocks.data import datasets, tokenizers, transforms  # noqa: F401
