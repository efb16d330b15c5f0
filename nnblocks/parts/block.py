"""Contract and built-in parts of kind `block` (being written)."""
