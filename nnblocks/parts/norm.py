"""Contract and built-in parts of kind `norm` (being written)."""
