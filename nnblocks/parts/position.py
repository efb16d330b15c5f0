"""Contract and built-in parts of kind `position` (being written)."""
