"""Registers the built-in datasets, transforms and tokenizers (kinds `dataset`, `transform`,
`tokenizer`) without importing their heavy dependencies until a part is built."""
