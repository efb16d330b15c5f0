"""Contract and built-in parts of kind `regularization` (being written)."""
