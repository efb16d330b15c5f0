"""Contract and built-in parts of kind `attention` (being written)."""
