"""Contract and built-in parts of kind `feedforward` (being written)."""
