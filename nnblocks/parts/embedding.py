"""Contract and built-in parts of kind `embedding` (being written)."""
