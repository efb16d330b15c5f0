"""Contract and built-in parts of kind `activation` (being written)."""
